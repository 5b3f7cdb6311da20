"""Text that is safe to put on a terminal: no escape sequence from a user or a model gets out."""

from __future__ import annotations

import json
from typing import Any

from state.inputs import BIDI_CONTROLS, BIDI_MARKS, LINE_SEPARATORS

_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
"""C0 controls, DEL and C1 controls: ESC (0x1B) and CSI (0x9B) start terminal commands."""
_UNICODE = sorted(map(ord, BIDI_CONTROLS | BIDI_MARKS | LINE_SEPARATORS))
"""Invisible characters that reorder text or break lines on their own terms."""
_ESCAPED = {code: f"\\u{code:04x}" for code in _UNICODE}
_LINE_AND_TAB = {ord("\n"): "\\n", ord("\t"): "\\t"}
_SHOWN = {code: f"\\x{code:02x}" for code in _CONTROLS if chr(code) not in "\n\t"} | _ESCAPED
_SHOWN_ONE_LINE = {code: f"\\x{code:02x}" for code in _CONTROLS} | _ESCAPED | _LINE_AND_TAB
_JSON_RAW = {code: f"\\u{code:04x}" for code in [0x7F, *range(0x80, 0xA0), *_UNICODE]}
"""What ``json.dumps(..., ensure_ascii=False)`` leaves raw but a terminal may act on."""


def printable(text: str, *, one_line: bool = False) -> str:
    r"""``text`` with every control character shown as an escape (``\x1b``) instead.

    So are the bidirectional controls and marks and the Unicode line and paragraph separators
    (``\u202e``, ``\u2028``): a model may write them, and older inputs may hold them.

    ``one_line``: newlines and tabs are escaped too (table cells, log lines).
    """
    return text.translate(_SHOWN_ONE_LINE if one_line else _SHOWN)


def to_json(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON, non-ASCII text kept, with every control character escaped."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str).translate(_JSON_RAW)
