"""Run settings: validated by pydantic, with every limit in the JSON schema Studio renders."""

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from graphs.article import graph as article
from state.context import MAX_SECTIONS_LIMIT, ConfigurationError, Context

LIMITS = {
    "temperature": {"minimum": 0.0, "maximum": 2.0},
    "max_tokens": {"minimum": 1},
    "timeout": {"exclusiveMinimum": 0.0},
    "max_sections": {"minimum": 1, "maximum": MAX_SECTIONS_LIMIT},
}


def test_every_limit_is_in_the_graphs_context_schema() -> None:
    schema = article.get_context_jsonschema()
    assert schema is not None
    properties = schema["properties"]
    for field, limits in LIMITS.items():
        assert limits.items() <= properties[field].items(), (field, properties[field])
    assert all(p.get("description") for p in properties.values())
    assert schema.get("additionalProperties") is False


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"max_sections": 0}, "greater than or equal to 1"),
        ({"max_sections": MAX_SECTIONS_LIMIT + 1}, "less than or equal to"),
        ({"max_tokens": 0}, "greater than or equal to 1"),
        ({"timeout": 0}, "greater than 0"),
        ({"temperature": -0.1}, "greater than or equal to 0"),
        ({"max_tokens": True}, "valid integer"),
        ({"max_tokens": "12"}, "valid integer"),
        ({"temperature": "0.5"}, "valid number"),
        ({"model": 3}, "valid string"),
        ({"worker_model": None}, "valid string"),
        ({"no_such_setting": 1}, "Unexpected keyword argument"),
    ],
    ids=lambda v: str(v),
)
def test_bad_settings_are_refused_naming_the_field(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as caught:
        Context(**settings)
    assert caught.value.errors()[0]["loc"] == (next(iter(settings)),)


def test_replace_validates_too() -> None:
    with pytest.raises(ValidationError, match="max_sections"):
        replace(Context(), max_sections=-1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, Context()),
        (Context(max_sections=3), Context(max_sections=3)),
        ({"max_sections": 3, "timeout": 5}, Context(max_sections=3, timeout=5.0)),
    ],
    ids=["none", "context", "dict"],
)
def test_of_gives_the_settings_a_run_stands_for(value: Any, expected: Context) -> None:
    assert Context.of(value) == expected


def test_of_validates_a_dict_as_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="invalid settings: max_tokens: Input should be"):
        Context.of({"max_tokens": -5})


def test_model_for_falls_back_to_the_default_model() -> None:
    context = Context(model="openai:a", writer_model="openai:b")
    assert context.model_for("writer") == "openai:b"
    assert context.model_for("planner") == "openai:a"
