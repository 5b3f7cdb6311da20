"""Errors in the right class: bad settings fail at once, before any LLM call, for every role."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from graphs.article import graph as article
from graphs.evaluation import graph as evaluation
from graphs.research import graph as research
from langgraph_fanout.llm.retry import LLMConnectionError, is_retryable
from state.context import ConfigurationError, Context
from tests.callbacks import NodeAttempts


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"model": "nonexistentprovider:foo"}, "model 'nonexistentprovider:foo'"),
        ({"model": "no-provider"}, "must be 'provider:model'"),
        ({"writer_model": "nonexistentprovider:foo"}, "writer model 'nonexistentprovider:foo'"),
        ({"planner_model": "anthropic:claude-x"}, "langchain-anthropic"),  # package missing
        ({"worker_model": "local:/no/such/model.gguf"}, "local model file not found"),
    ],
    ids=["unknown-provider", "no-provider", "writer-model", "package-missing", "local-file"],
)
async def test_a_bad_model_setting_fails_at_once_before_any_llm_call(
    fake_llm, settings: dict[str, str], message: str
) -> None:
    attempts = NodeAttempts()
    with pytest.raises(ConfigurationError, match=message):
        await research.ainvoke(
            {"topic": "Bees"}, {"callbacks": [attempts]}, context=Context(**settings)
        )

    assert fake_llm.log() == []
    assert attempts.counts == {"plan_research": 1}  # never retried


def test_a_bad_setting_fails_the_sync_call_style_too(fake_llm) -> None:
    with pytest.raises(ConfigurationError, match="aggregator model"):
        evaluation.invoke(
            {"text": "Hello"}, context=Context(aggregator_model="nonexistentprovider:x")
        )
    assert fake_llm.log() == []


def test_settings_that_arrive_as_a_dict_are_validated_before_any_node_runs(fake_llm) -> None:
    attempts = NodeAttempts()
    with pytest.raises(ValidationError, match="max_sections"):
        article.invoke(
            {"topic": "Tea"},
            {"callbacks": [attempts]},
            context={"max_sections": 0},  # type: ignore[arg-type]
        )
    assert attempts.counts == {}
    assert fake_llm.log() == []


def test_configuration_errors_are_never_retried() -> None:
    assert not is_retryable(ConfigurationError("x"))
    assert not is_retryable(KeyError("a bug of ours"))
    assert not is_retryable(AttributeError("a bug of ours"))
    assert is_retryable(LLMConnectionError("x"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_server_is_named_in_the_error(fake_llm, monkeypatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", url)

    with pytest.raises(LLMConnectionError, match=f"plan_sections: cannot connect: POST {url}"):
        await article.ainvoke({"topic": "Tea"}, context=Context(model="openai:unreachable"))
