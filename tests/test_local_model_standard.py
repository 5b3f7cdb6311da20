"""LangChain's standard chat-model tests for ChatLocalLlama, run offline on the local model.

Tool calling, multimodal inputs and per-call model override are not features of the class,
so the properties below switch those tests off (the library then skips them with a reason).
Structured output (every ``method``, including ``json_mode``) runs under the schema's
grammar, so those tests run for real.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from langgraph_fanout.engine.chat_model import ChatLocalLlama
from tests.requirements import local_model_weights

pytestmark = pytest.mark.local_model

WEIGHTS = local_model_weights()

# 48-character strings keep a two-field JSON object well inside 64 tokens, so structured
# replies are never cut off by max_tokens (and the suite stays quick).
PARAMS: dict[str, Any] = {"model_path": WEIGHTS, "max_string_chars": 48}


class _Features:
    """What ChatLocalLlama does and does not do, for both suites."""

    @property
    def chat_model_class(self) -> type[ChatLocalLlama]:
        return ChatLocalLlama

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(PARAMS)

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True  # method="json_mode" is constrained by the schema's grammar too

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_image_urls(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_video_inputs(self) -> bool:
        return False

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False

    @property
    def supports_image_tool_message(self) -> bool:
        return False

    @property
    def supports_pdf_tool_message(self) -> bool:
        return False


class TestChatLocalLlamaUnit(_Features, ChatModelUnitTests):
    """Construction, standard params, structured-output plumbing."""


class TestChatLocalLlamaIntegration(_Features, ChatModelIntegrationTests):
    """invoke/ainvoke/stream/astream/batch, usage metadata, stop, structured output."""

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {"temperature": 0, "max_tokens": 64}  # short replies keep the suite quick
