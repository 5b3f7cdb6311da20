"""Run settings: which model plays each role, and the knobs of a run.

Passed per run as ``context=Context(...)`` (Python) or as the ``context`` object of a
``langgraph dev`` run; Studio renders these fields as the assistant's settings form.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

Role = Literal["evaluator", "aggregator", "planner", "worker", "writer"]

DEFAULT_MAX_SECTIONS = 8
_KINDS: dict[object, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float)}


@dataclass(kw_only=True)
class Context:
    """Models and limits for one run. Model names are ``provider:model`` strings."""

    model: str = field(
        default="",
        metadata={
            "description": "Default model for every role, as 'provider:model' (e.g. "
            "'openai:gpt-4.1-mini', 'local' for the embedded model, 'local:/path/model.gguf'). "
            "Empty: $FANOUT_MODEL, else openai:gpt-4.1-mini when OPENAI_API_KEY is set, "
            "else the embedded model."
        },
    )
    evaluator_model: str = field(
        default="",
        metadata={"description": "Model of the evaluation branches. Empty: `model`."},
    )
    aggregator_model: str = field(
        default="",
        metadata={"description": "Model that aggregates the evaluations. Empty: `model`."},
    )
    planner_model: str = field(
        default="",
        metadata={"description": "Model that plans sections or questions. Empty: `model`."},
    )
    worker_model: str = field(
        default="",
        metadata={
            "description": "Model of the fan-out workers (section writer, researcher). "
            "Empty: `model`."
        },
    )
    writer_model: str = field(
        default="",
        metadata={"description": "Model that writes the research report. Empty: `model`."},
    )
    temperature: float = field(
        default=0.0,
        metadata={"description": "Sampling temperature for every call."},
    )
    max_tokens: int = field(
        default=1024,
        metadata={"description": "Upper bound on tokens generated per LLM call."},
    )
    timeout: float = field(
        default=60.0,
        metadata={"description": "Seconds before one LLM request times out (then it is retried)."},
    )
    max_sections: int = field(
        default=DEFAULT_MAX_SECTIONS,
        metadata={
            "description": "Most sections an article plan may fan out to; a longer plan is cut "
            "to this many."
        },
    )

    def __post_init__(self) -> None:
        """Reject settings that cannot work (e.g. from a server request), naming the field."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, _KINDS[spec.type]):
                raise TypeError(f"{spec.name} must be {spec.type}, got {value!r}")
        if self.max_sections < 1:
            raise ValueError(f"max_sections must be >= 1, got {self.max_sections}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")

    def model_for(self, role: Role) -> str:
        """The model spec for ``role``: its own field, else ``model`` (may be empty: auto)."""
        return getattr(self, f"{role}_model") or self.model
