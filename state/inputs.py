"""Input validation shared by the graphs, the CLI and the server."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError

MAX_TEXT_CHARS = 20_000
"""Longest text the evaluation graph accepts."""
MAX_TOPIC_CHARS = 2_000
"""Longest topic the article and research graphs accept."""


class InvalidInputError(ValueError):
    """The graph input is unusable; raised before any LLM call and never retried."""


def not_blank(value: str) -> str:
    """Strip ``value`` and refuse it when nothing is left."""
    stripped = value.strip()
    if not stripped:
        raise ValueError("must not be empty or only whitespace")
    return stripped


Topic = Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_CHARS), AfterValidator(not_blank)]
"""A topic: 1 to MAX_TOPIC_CHARS characters, stripped, not blank."""

_M = TypeVar("_M", bound=BaseModel)


def parse_input(model: type[_M], data: Any) -> _M:
    """Validate ``data`` against ``model``, raising one readable :class:`InvalidInputError`."""
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid {model.__name__}: {explain(exc)}") from None


def explain(exc: ValidationError) -> str:
    """Every problem pydantic found, on one line: ``field: what is wrong; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'input'}: "
        f"{err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors(include_url=False)
    )
