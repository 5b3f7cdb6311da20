"""Run settings: which model plays each role, and the knobs of a run.

Passed per run as ``context=Context(...)`` (Python) or as the ``context`` object of a
``langgraph dev`` run; Studio renders these fields, with their limits, as the assistant's
settings form. pydantic validates every field (strictly: ``"5"`` is not an int, ``True`` is
not a number), in Python and over the API alike.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from state.inputs import explain

DEFAULT_MAX_SECTIONS = 8
MAX_SECTIONS_LIMIT = 1_000
"""Highest ``max_sections`` accepted: the largest fan-out the project is benchmarked at."""
MAX_TOKENS_LIMIT = 128_000


class ConfigurationError(ValueError):
    """A run setting cannot work (an invalid value, an unknown or unloadable model).

    Found before the run's first LLM call and never retried. A ``ValueError``, so that the
    ``langgraph dev`` server shows its message (it hides other exceptions' messages).
    """


@dataclass(kw_only=True, frozen=True, config=ConfigDict(strict=True, extra="forbid"))
class Context:
    """Models and limits for one run. Model names are ``provider:model`` strings."""

    model: str = Field(
        default="",
        description="Default model for every role, as 'provider:model' (e.g. "
        "'openai:gpt-4.1-mini', 'local' for the embedded model, 'local:/path/model.gguf'). "
        "Empty: $FANOUT_MODEL, else openai:gpt-4.1-mini when OPENAI_API_KEY is set, "
        "else the embedded model.",
    )
    evaluator_model: str = Field(
        default="", description="Model of the evaluation branches. Empty: `model`."
    )
    aggregator_model: str = Field(
        default="", description="Model that aggregates the evaluations. Empty: `model`."
    )
    planner_model: str = Field(
        default="", description="Model that plans sections or questions. Empty: `model`."
    )
    worker_model: str = Field(
        default="",
        description="Model of the fan-out workers (section writer, researcher). Empty: `model`.",
    )
    writer_model: str = Field(
        default="", description="Model that writes the research report. Empty: `model`."
    )
    temperature: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Sampling temperature for every call."
    )
    max_tokens: int = Field(
        default=1024,
        ge=1,
        le=MAX_TOKENS_LIMIT,
        description="Upper bound on tokens generated per LLM call.",
    )
    timeout: float = Field(
        default=60.0,
        gt=0.0,
        le=3600.0,
        description="Seconds before one LLM request times out (then it is retried).",
    )
    max_sections: int = Field(
        default=DEFAULT_MAX_SECTIONS,
        ge=1,
        le=MAX_SECTIONS_LIMIT,
        description="Most sections an article plan may fan out to; a longer plan is cut to "
        "this many.",
    )
    max_llm_calls: int | None = Field(
        default=None,
        ge=1,
        description="Most LLM calls the run may start, retries included; at the limit the run "
        "pauses (resumable with a higher limit). None: no limit.",
    )
    max_total_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Once the run's finished calls used this many tokens (input + output), no "
        "new call starts and the run pauses (resumable with a higher limit). None: no limit.",
    )
    review_plan: bool = Field(
        default=False,
        description="Pause after planning (article, research) until a person runs, edits or "
        "rejects the plan: the interrupt's value is the plan; resume with the plan, "
        '{"approve": true} or {"reject": true}.',
    )

    def limits(self) -> dict[str, int | None]:
        """The spending limits, by setting name (None: no limit)."""
        return {"max_llm_calls": self.max_llm_calls, "max_total_tokens": self.max_total_tokens}

    def limits_set(self) -> dict[str, int]:
        """The spending limits that are set, by setting name."""
        return {name: value for name, value in self.limits().items() if value is not None}

    def has_limits(self) -> bool:
        """Whether any spending limit is set."""
        return bool(self.limits_set())

    def model_for(self, role: str) -> str:
        """The model spec for ``role``: its ``<role>_model`` field, else ``model`` (may be empty).

        The roles are the workflows' (``langgraph_fanout.workflows.ROLES``); each has a field.
        """
        spec: str = getattr(self, f"{role}_model") or self.model
        return spec

    @classmethod
    def of(cls, value: Context | dict[str, Any] | None) -> Context:
        """The settings ``value`` stands for: itself, validated from a dict, or the defaults.

        A run's ``runtime.context`` is None when the caller passed none, and a plain dict
        where a serializer carried it (a Temporal activity).

        Raises:
            ConfigurationError: the dict holds an invalid setting.
        """
        if value is None:
            return cls()
        if isinstance(value, dict):
            try:
                return cls(**value)
            except ValidationError as exc:
                raise ConfigurationError(f"invalid settings: {explain(exc)}") from None
        return value
