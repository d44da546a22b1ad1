"""Java and JavaScript values written as strings (BFCL's simple_java / simple_javascript) read as Python values.

BFCL asks for Java/JavaScript arguments "in string representation" (`"5L"`, `"new int[]{1, 2}"`,
`"new HashMap<String, String>() {{ put(\\"a\\", \\"b\\"); }}"`, `"[1, 2]"`, `"{key: 'v'}"`) and converts
them by declared type before comparing with its accepted values. A string that does not read as the
declared type stays a string: the type check then fails it, or treats it as a variable name.
"""

from __future__ import annotations

import json
import re
from typing import Any

JAVA_TYPES: dict[str, type] = {
    "byte": int,
    "short": int,
    "integer": int,
    "float": float,
    "double": float,
    "long": int,
    "boolean": bool,
    "char": str,
    "Array": list,
    "ArrayList": list,
    "Set": set,
    "HashMap": dict,
    "Hashtable": dict,
    "Queue": list,
    "Stack": list,
    "String": str,
    "any": str,
}

JS_TYPES: dict[str, type] = {
    "String": str,
    "integer": int,
    "float": float,
    "Bigint": int,
    "Boolean": bool,
    "dict": dict,
    "array": list,
    "any": str,
}

# Declared types whose items carry a type of their own (`items.type`), checked one level deep.
NESTED_TYPES = ("Array", "ArrayList", "array")


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        return text[1:-1]
    return text


def _split_top(text: str) -> list[str]:
    """Comma-separated pieces at nesting depth 0, outside quotes."""
    pieces, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    tail = text[start:]
    if tail.strip() or pieces:
        pieces.append(tail)
    return [p.strip() for p in pieces]


def _java_scalar(text: str, kind: str) -> Any:
    text = text.strip()
    try:
        if kind in ("byte", "short", "integer", "long"):
            return int(text[:-1] if text[-1:] in "lL" else text)
        if kind in ("float", "double"):
            return float(text[:-1] if text[-1:] in "fFdD" else text)
    except ValueError:
        return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    if kind in ("char", "String"):
        return _unquote(text)
    return text  # any: the expression as written (a variable name, usually)


def _java_literal(text: str) -> Any:
    """A literal of unknown type (a map's value): quoted text, a number, a boolean, else as written."""
    text = text.strip()
    if text[:1] in "\"'":
        return _unquote(text)
    if text in ("true", "false"):
        return text == "true"
    for kind in ("long", "double"):
        value = _java_scalar(text, kind)
        if not isinstance(value, str):
            return value
    return text


def java_value(text: str, kind: str, item_kind: str | None = None) -> Any:
    """A Java expression written as a string, read as the declared `kind` (BFCL's type names)."""
    text = text.strip()
    if kind in ("Array", "ArrayList", "Set", "Queue", "Stack"):
        body = None
        braces = re.match(r"^new\s+[\w<>\[\]\s,]*\{(.*)\}$", text, re.DOTALL)
        wrapped = re.match(r"^new\s+\w+(?:<[^>]*>)?\((.*)\)$", text, re.DOTALL)  # new ArrayList<>(...)
        inner = wrapped.group(1).strip() if wrapped else text
        as_list = re.match(r"^(?:Arrays\.asList|List\.of|Set\.of)\((.*)\)$", inner, re.DOTALL)
        if braces:
            body = braces.group(1)
        elif as_list:
            body = as_list.group(1)
        elif text.startswith("[") and text.endswith("]") or text.startswith("{") and text.endswith("}"):
            body = text[1:-1]
        if body is None:
            return text
        values = [
            java_value(p, item_kind) if item_kind not in (None, "any") else _java_literal(p) for p in _split_top(body)
        ]
        return set(values) if kind == "Set" else values
    if kind in ("HashMap", "Hashtable"):
        pairs = re.findall(r"put\(\s*(.+?)\s*,\s*(.+?)\s*\)\s*;", text)
        if not pairs and not re.match(r"^new\s+\w+", text):
            return text
        return {_unquote(k): _java_literal(v) for k, v in pairs}
    return _java_scalar(text, kind)


def _js_literal(text: str) -> Any:
    """A JavaScript literal (object keys may be bare, strings single-quoted) as JSON reads it, or None."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    quoted = re.sub(r"'((?:[^'\\]|\\.)*)'", lambda m: json.dumps(m.group(1)), text)
    keyed = re.sub(r"([{,]\s*)([A-Za-z_$][\w$]*)\s*:", r'\1"\2":', quoted)
    try:
        return json.loads(keyed)
    except (ValueError, RecursionError):
        return None


def js_value(text: str, kind: str, item_kind: str | None = None) -> Any:
    """A JavaScript expression written as a string, read as the declared `kind` (BFCL's type names)."""
    text = text.strip()
    if kind in ("integer", "Bigint"):
        try:
            return int(text[:-1] if text.endswith("n") else text)
        except ValueError:
            return text
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "Boolean":
        return {"true": True, "false": False}.get(text, text)
    if kind == "String":
        return _unquote(text)
    if kind in ("array", "dict"):
        parsed = _js_literal(text)
        if kind == "array" and isinstance(parsed, list):
            return parsed
        if kind == "dict" and isinstance(parsed, dict):
            return parsed
        return text
    return text


def java_literal(value: Any) -> str:
    """A Python value written as Java source, the way BFCL asks for Java arguments (for reference answers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set)):
        return "new ArrayList<>(Arrays.asList(" + ", ".join(_java_item(v) for v in value) + "))"
    if isinstance(value, dict):
        puts = " ".join(f"put({_java_item(k)}, {_java_item(v)});" for k, v in value.items())
        return "new HashMap<>() {{ " + puts + " }}"
    return str(value)


def _java_item(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else java_literal(value)


def js_literal(value: Any) -> str:
    """A Python value written as JavaScript source (for reference answers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
