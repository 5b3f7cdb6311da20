"""One list of workflows: every door is derived from ``langgraph_fanout.workflows``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from langgraph_fanout.cli.main import build_parser
from langgraph_fanout.contract import RegistrationError, check_graph
from langgraph_fanout.placement import IN_PROCESS
from langgraph_fanout.server import graphs as served
from langgraph_fanout.workflows import (
    ARTICLE_PLAN,
    COMMANDS,
    EXTRA_VARIABLE,
    ROOT,
    WORKFLOWS,
    Worker,
    Workflow,
    registered,
    server_configs,
)
from state.context import ConfigurationError, Context


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


# --- contract breaks fail at registration, with what to do ------------------------------------

TRANSLATE = "tests.fixtures.translate"


def translate_entry(**changes: Any) -> Workflow:
    from tests.fixtures.translate.workflow import TRANSLATE as ENTRY

    return dataclasses.replace(ENTRY, **changes)


def graph_module(build: Callable[[Any], Any], name: str = "translate") -> Any:
    """A graph module as ``check_graph`` sees one, its builder made by ``build(placement)``."""
    builder = build(IN_PROCESS)
    return SimpleNamespace(
        __name__="broken", build=build, builder=builder, graph=builder.compile(name=name)
    )


def test_the_fixture_workflow_keeps_the_contract() -> None:
    entry = translate_entry()
    assert entry.module.graph.name == "translate"


def test_a_missing_graph_module_is_named_with_what_to_write() -> None:
    with pytest.raises(
        RegistrationError, match=r"no graph module 'graphs\.nope': write graphs/nope\.py"
    ):
        translate_entry(name="nope", graph_module="").module  # noqa: B018


def test_a_graph_compiled_under_another_name_is_refused() -> None:
    from tests.fixtures.translate import graph

    with pytest.raises(
        RegistrationError, match=r"compile it with builder.compile\(name='translate'\)"
    ):
        check_graph(translate_entry(), graph_module(graph.build, name="LangGraph"))


def test_a_node_added_without_the_placement_is_refused() -> None:
    from tests.fixtures.translate import graph

    def build(placement: Any) -> Any:
        builder = graph.build(placement)
        builder.add_node("extra", graph.collect)  # not through placement.add_step
        return builder

    with pytest.raises(RegistrationError, match="node 'extra' was not added through the placement"):
        check_graph(translate_entry(), graph_module(build))


def test_a_worker_whose_results_key_has_no_reducer_is_refused() -> None:
    from tests.fixtures.translate import graph

    with pytest.raises(
        RegistrationError, match=r"'languages', which must be a list with a reducer"
    ):
        check_graph(
            translate_entry(workers=(Worker("translate", "languages", str),)),
            graph_module(graph.build),
        )
    with pytest.raises(RegistrationError, match=r"workers are \['translate'\].*declares \[\]"):
        check_graph(translate_entry(workers=()), graph_module(graph.build))


def test_a_plan_without_its_review_node_is_refused() -> None:
    from tests.fixtures.translate import graph

    plan = dataclasses.replace(ARTICLE_PLAN, review_node="review_languages")
    with pytest.raises(
        RegistrationError, match="node 'review_languages', which the graph does not have"
    ):
        check_graph(translate_entry(plan=plan), graph_module(graph.build))


def test_a_role_without_a_setting_is_refused_as_the_entry_is_made() -> None:
    with pytest.raises(RegistrationError, match=r"add `translator_model: str"):
        translate_entry(roles=("planner", "translator"))


def test_a_clash_or_a_bad_module_in_fanout_workflows_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(EXTRA_VARIABLE, f"{TRANSLATE}.workflow")
    assert "translate" in registered(WORKFLOWS.values())
    with pytest.raises(RegistrationError, match="two workflows have the name translate"):
        registered([*WORKFLOWS.values(), translate_entry()])
    monkeypatch.setenv(EXTRA_VARIABLE, f"{TRANSLATE}.state")
    with pytest.raises(RegistrationError, match=r"has no WORKFLOWS = \(Workflow"):
        registered(WORKFLOWS.values())


@pytest.mark.parametrize("name", [name for name, w in WORKFLOWS.items() if w.plan is None])
def test_a_plan_review_is_refused_where_there_is_no_plan(fake_llm, name: str) -> None:
    workflow = WORKFLOWS[name]
    with pytest.raises(ConfigurationError, match=f"{workflow.name} runs have no plan to review"):
        workflow.module.graph.invoke({workflow.input_field: "x"}, context=Context(review_plan=True))
    assert fake_llm.log() == []


def test_every_worker_is_labelled_from_its_entry() -> None:
    from langgraph_fanout.workflows import task_label

    assert task_label("write_section", {"section": {"name": "Tides"}}) == "Tides"
    assert task_label("research_question", {"question": "Why?"}) == "Why?"
    assert task_label("plan_sections", {"topic": "x"}) == ""
