"""The graphs' wiring and public schemas, pinned by snapshots."""

import pytest

from langgraph_fanout.workflows import WORKFLOWS

GRAPHS = {name: w.module.graph for name, w in WORKFLOWS.items()}


@pytest.mark.parametrize("name", GRAPHS)
def test_mermaid(snapshot, name):
    assert GRAPHS[name].get_graph().draw_mermaid() == snapshot


@pytest.mark.parametrize("name", GRAPHS)
def test_compiled_graph_is_named_and_builder_exported(name):
    graph = GRAPHS[name]
    assert graph.name == name
    assert graph.checkpointer is None
    assert (
        WORKFLOWS[name].builder.compile().get_graph().draw_mermaid()
        == graph.get_graph().draw_mermaid()
    )


@pytest.mark.parametrize("name", GRAPHS)
def test_schemas_describe_every_field(name):
    graph = GRAPHS[name]
    for schema in (
        graph.get_input_jsonschema(),
        graph.get_output_jsonschema(),
        graph.get_context_jsonschema(),
    ):
        assert schema["properties"]
        for field, spec in schema["properties"].items():
            assert spec.get("description"), f"{name}: {field} has no description"
