"""Input validation shared by the graphs, the CLI and the server."""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Annotated, Any, TypeVar, get_type_hints

from pydantic import AfterValidator, BaseModel, Field, TypeAdapter, ValidationError

MAX_TEXT_CHARS = 20_000
"""Longest text the evaluation graph accepts."""
MAX_TOPIC_CHARS = 2_000
"""Longest topic the article and research graphs accept."""


class InvalidInputError(ValueError):
    """The graph input is unusable; raised before any LLM call and never retried."""


ALLOWED_CONTROLS = frozenset("\t\n\r")
"""The only control characters an input may hold."""
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Bidirectional embeddings, overrides and isolates: they reorder how the text after them is
shown (text that reads one way and is another, "Trojan Source"). Refused in every input."""
BIDI_MARKS = frozenset("\u200e\u200f\u061c")
"""Left-to-right, right-to-left and Arabic letter marks: invisible, but right-to-left writing
uses them. Accepted in a topic or text (not in a thread id); never printed raw."""
LINE_SEPARATORS = frozenset("\u2028\u2029")
"""Unicode's line and paragraph separators: line breaks, accepted where a newline is; never
printed raw."""
INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})
"""Unicode categories that show nothing on their own: controls, zero-width format
characters, spaces and separators, combining marks."""


def usable_text(value: str) -> str:
    """``value`` stripped; refused with control characters or no visible character.

    Control characters other than tab and newline are refused, not removed: they are never
    meant in a topic or a text, and a NUL breaks PostgreSQL. So are the bidirectional controls
    that reorder text (:data:`BIDI_CONTROLS`). The same rule holds for every door (Python,
    CLI, server).
    """
    refuse_controls(value)
    stripped = value.strip()
    if not any(unicodedata.category(char) not in INVISIBLE for char in stripped):
        raise ValueError("must not be empty or only whitespace or invisible characters")
    return stripped


def refuse_controls(value: str) -> None:
    """Refuse ``value`` if it holds a control character (but tab, newlines) or a bidi control.

    Raises:
        ValueError: it does; the message names the character and where it is.
    """
    for position, char in enumerate(value):
        category = unicodedata.category(char)
        if (category == "Cc" and char not in ALLOWED_CONTROLS) or category == "Cs":
            raise ValueError(
                f"must not contain control characters (U+{ord(char):04X} at position {position})"
            )
        if char in BIDI_CONTROLS:
            raise ValueError(
                f"must not contain bidirectional control characters (U+{ord(char):04X} at "
                f"position {position}): they change the order in which text is shown"
            )


Topic = Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_CHARS), AfterValidator(usable_text)]
"""A topic: 1 to MAX_TOPIC_CHARS characters, stripped, visible, without control characters."""

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


def check_update(input_schema: type[BaseModel], state_schema: Any, values: Any) -> None:
    """Refuse a state update (``update_state``, a ``Command``'s ``update``) no run could make.

    Input fields are held to the input check; every other field must be one of the state's,
    of its type; no text anywhere in it may hold a control character.

    Raises:
        InvalidInputError: the update is refused; nothing has been saved.
    """
    from langgraph.types import Overwrite

    if values is None:
        return
    if not isinstance(values, dict):
        raise InvalidInputError(
            f"a state update must be an object of state fields, got {type(values).__name__}"
        )
    values = {k: v.value if isinstance(v, Overwrite) else v for k, v in values.items()}
    given = {k: v for k, v in values.items() if k in input_schema.model_fields}
    if given:
        parse_input(input_schema, given)
    fields = _state_fields(state_schema)
    if unknown := sorted(str(k) for k in values if k not in fields):
        raise InvalidInputError(f"invalid state update: no state field {', '.join(unknown)}")
    for key, value in values.items():
        try:
            fields[key].validate_python(value, strict=True)
            _refuse_controls_within(value)
        except ValidationError as exc:
            problems = explain(exc).removeprefix("input: ")
            raise InvalidInputError(f"invalid state update: {key}: {problems}") from None
        except ValueError as exc:
            raise InvalidInputError(f"invalid state update: {key}: {exc}") from None


@cache
def _state_fields(state_schema: Any) -> dict[str, TypeAdapter[Any]]:
    """A validator of each field of a ``TypedDict`` state schema."""
    return {
        name: TypeAdapter(hint)
        for name, hint in get_type_hints(state_schema, include_extras=True).items()
    }


def _refuse_controls_within(value: Any) -> None:
    """:func:`refuse_controls` on every text in ``value`` (keys too)."""
    if isinstance(value, str):
        refuse_controls(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_controls_within(key)
            _refuse_controls_within(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_controls_within(item)
