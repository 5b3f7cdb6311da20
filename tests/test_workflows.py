"""One list of workflows: every door is derived from ``langgraph_fanout.workflows``."""

from __future__ import annotations

import json

import pytest

from langgraph_fanout.cli.main import build_parser
from langgraph_fanout.server import graphs as served
from langgraph_fanout.workflows import COMMANDS, ROOT, WORKFLOWS, Workflow, server_configs


def test_server_configs_are_generated_from_the_list() -> None:
    for name, expected in server_configs().items():
        on_disk = json.loads((ROOT / name).read_text())
        assert on_disk == expected, f"{name} is stale: run python -m langgraph_fanout.workflows"
        assert sorted(on_disk["graphs"]) == sorted(WORKFLOWS)


def test_every_workflow_is_served_run_by_a_command_and_on_temporal() -> None:
    from langgraph_fanout.temporal.worker import graph_builders
    from langgraph_fanout.temporal.workflows import definition_of

    for name, workflow in WORKFLOWS.items():
        assert COMMANDS[workflow.command] is workflow
        assert build_parser().parse_args([workflow.command, "x"]).command == workflow.command
        assert callable(getattr(served, name)) and served.SERVED[name].name == name
        assert definition_of(name) is workflow
        assert name in graph_builders()
        assert workflow.module.graph.name == name  # graphs/<name>.py compiles it by that name


@pytest.mark.parametrize("workflow", list(WORKFLOWS.values()), ids=list(WORKFLOWS))
def test_review_options_exist_where_there_is_a_plan(workflow: Workflow) -> None:
    argv = [workflow.command, "x", "--review"]
    if workflow.plan is None:
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
    else:
        assert build_parser().parse_args(argv).review is True
