"""What a run used: LLM calls and tokens, in total and per model (``usage`` in ``--json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages.ai import UsageMetadata, add_usage


def run_usage(llm_calls: int, by_model: Mapping[str, UsageMetadata]) -> dict[str, Any]:
    """``{"llm_calls", "input_tokens", "output_tokens", "total_tokens", "by_model"}``."""
    total: UsageMetadata | None = None
    for usage in by_model.values():
        total = add_usage(total, usage)
    return {
        "llm_calls": llm_calls,
        "input_tokens": total["input_tokens"] if total else 0,
        "output_tokens": total["output_tokens"] if total else 0,
        "total_tokens": total["total_tokens"] if total else 0,
        "by_model": dict(by_model),
    }


def merge_usage(
    into: dict[str, UsageMetadata], more: Mapping[str, UsageMetadata]
) -> dict[str, UsageMetadata]:
    """``into`` with the per-model usage ``more`` added (``into`` is updated)."""
    for model, usage in more.items():
        into[model] = add_usage(into.get(model), usage)
    return into
