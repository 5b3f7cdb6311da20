"""JSON schema to a bounded GBNF grammar for the embedded model's structured output.

The grammar holds a reply to the bounds its schema sets (``maxLength``, ``pattern``,
``minItems``, ``maxItems``...) and bounds every other string and list too: unbounded fields
run on until ``max_tokens`` and the JSON is cut. Raw control characters are excluded from
strings (llama-cpp-python's converter admits them, which yields invalid JSON).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

DEFAULT_MAX_STRING_CHARS = 400
"""Grammar bound on a JSON string whose schema sets no smaller ``maxLength``."""
DEFAULT_MAX_ITEMS = 8
"""Grammar bound on a JSON array whose schema sets no ``maxItems``."""
INSTALL_HINT = (
    "the embedded model needs llama-cpp-python: install the [local] extra with `make install` "
    "(it compiles llama.cpp with the CMAKE_ARGS that avoid the AMX crash)"
)

# A JSON string character: anything but a quote, a backslash or a control character, or an
# escape. llama-cpp-python's own rule (`[^"\\]`) lets raw newlines and tabs into strings.
_CHAR_RULE_UNSAFE = r'char ::= [^"\\] |'
_CHAR_RULE_SAFE = r'char ::= [^"\\\x00-\x1F\x7F] |'


def bound_json_schema(
    schema: Mapping[str, Any],
    *,
    max_string_chars: int = DEFAULT_MAX_STRING_CHARS,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> dict[str, Any]:
    """A copy of ``schema`` in which every free-text string and every list is bounded.

    Args:
        schema: A JSON schema (``$defs``/``definitions`` and ``$ref`` allowed).
        max_string_chars: ``maxLength`` for strings without a smaller one (never below
            their ``minLength``). Strings with a ``pattern``, ``format``, ``enum`` or
            ``const`` are left alone: they are bounded already.
        max_items: ``maxItems`` for arrays without one (never below their ``minItems``).

    Returns:
        The bounded schema; ``schema`` itself is not modified.
    """
    bounded = copy.deepcopy(dict(schema))

    def visit(node: Any) -> None:
        if not isinstance(node, dict):
            return
        types = node.get("type")
        type_list = types if isinstance(types, list) else [types]
        if "string" in type_list and not {"pattern", "format", "enum", "const"} & node.keys():
            limit = max(max_string_chars, int(node.get("minLength", 0)))
            node["maxLength"] = min(int(node.get("maxLength", limit)), limit)
        if "array" in type_list and isinstance(node.get("items"), dict):
            node.setdefault("maxItems", max(max_items, int(node.get("minItems", 0))))
        for key in ("properties", "$defs", "definitions", "patternProperties"):
            for child in (node.get(key) or {}).values():
                visit(child)
        for key in ("items", "additionalProperties", "not"):
            visit(node.get(key))
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for child in node.get(key) or []:
                visit(child)

    visit(bounded)
    return bounded


def json_schema_to_grammar(
    schema: Mapping[str, Any],
    *,
    max_string_chars: int = DEFAULT_MAX_STRING_CHARS,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> str:
    r"""The GBNF grammar that admits exactly the JSON values of ``schema``, bounded.

    Strings and lists are bounded as by :func:`bound_json_schema`, and the ``char`` rule
    excludes raw control characters (``\x00-\x1F``, ``\x7F``) so every reply is valid JSON;
    they stay expressible as escapes (``\n``, ``\u0009``).

    Args:
        schema: A JSON schema.
        max_string_chars: Default bound on string length, in characters.
        max_items: Default bound on array length.

    Returns:
        The grammar text, root rule ``root``.

    Raises:
        ImportError: llama-cpp-python is not installed.
    """
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc

    bounded = bound_json_schema(schema, max_string_chars=max_string_chars, max_items=max_items)
    gbnf = json_schema_to_gbnf(json.dumps(bounded))
    lines = [
        _CHAR_RULE_SAFE + line[len(_CHAR_RULE_UNSAFE) :]
        if line.startswith(_CHAR_RULE_UNSAFE)
        else line
        for line in gbnf.splitlines()
    ]
    if any(line.startswith("char ::=") for line in lines) and not any(
        line.startswith(_CHAR_RULE_SAFE) for line in lines
    ):
        raise RuntimeError("llama-cpp-python's JSON `char` rule changed; update engine/grammar.py")
    return "\n".join(lines)


@lru_cache(maxsize=128)
def cached_grammar(schema_json: str, max_string_chars: int, max_items: int) -> str:
    """The grammar of a JSON schema (given as JSON text), built once."""
    return json_schema_to_grammar(
        json.loads(schema_json), max_string_chars=max_string_chars, max_items=max_items
    )


def _top_level_keys(schema: Mapping[str, Any]) -> list[str]:
    """The property names of the object ``schema`` describes (following a top ``$ref``)."""
    node: Mapping[str, Any] = schema
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        node = node if isinstance(node, Mapping) else {}
    return list((node.get("properties") or {}).keys())


def keys_instruction(schema: Mapping[str, Any]) -> str:
    """A one-line reminder of the JSON keys to reply with (small models need it)."""
    keys = _top_level_keys(schema)
    if not keys:
        return "Reply with JSON only."
    named = ", ".join(f'"{k}"' for k in keys)
    return f"Reply with only a JSON object with the keys {named}."
