"""Shared fixtures."""

from collections.abc import Iterator

import pytest

from tests.fake_llm_client import FakeLLM, start_fake_llm

# --- fake LLM -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLM]:
    """One fake OpenAI-compatible server process for the whole session."""
    with start_fake_llm() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    """The fake server, reset, with the OpenAI env vars pointing at it and tracing off."""
    fake_llm_server.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("FANOUT_MODEL", "openai:fake-model")
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return fake_llm_server
