"""The project's settings from environment variables, validated by pydantic.

:class:`Environment` holds each variable's type, bounds, default and description; a reader
validates only the variable it asks for (:func:`environment`), so a bad value of one
variable does not break code that never reads it.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from state.context import ConfigurationError


class Environment(BaseModel):
    """Environment variables the project reads; an unset or empty one has its default.

    A field's ``title`` says what its variable must be, for error messages.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fanout_db: str | None = Field(
        None,
        alias="FANOUT_DB",
        title="a SQLite file path (or sqlite:/// URL) or a postgresql:// URL",
        description="The database of runs (checkpoints, thread locks, large Temporal payloads) "
        "when --db is not given.",
    )
    fanout_lock_wait: float = Field(
        60.0,
        alias="FANOUT_LOCK_WAIT",
        ge=0,
        allow_inf_nan=False,
        title="a number of seconds >= 0",
        description="Seconds a served run waits for its thread while another process runs it.",
    )


def environment(variable: str) -> Environment:
    """The settings with ``variable`` (an alias of :class:`Environment`) read and validated.

    Raises:
        ConfigurationError: its value is invalid; the message names the variable and why.
    """
    value = os.environ.get(variable)
    try:
        return Environment.model_validate({variable: value} if value else {})
    except ValidationError as exc:
        (field,) = (f for f in Environment.model_fields.values() if f.alias == variable)
        why = "; ".join(error["msg"] for error in exc.errors(include_url=False))
        raise ConfigurationError(
            f"{variable} must be {field.title}, got {value!r} ({why})"
        ) from None
