"""Just enough PromQL to turn an alert rule's expression into the series worth plotting.

`rate(errors[5m]) / rate(requests[5m]) > 0.05` fires when the ratio crosses 0.05; the context wants the
ratio itself, before and after it crossed. So the top-level comparison is dropped, keeping the side
that is not a bare number. A top-level `and`/`or`/`unless` keeps its first operand. Anything this
scanner does not understand is returned unchanged: a query that shows too much beats no query.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPERATORS = ("and", "or", "unless")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(Inf|NaN)$", re.IGNORECASE)
# Modifiers that may follow a binary operator: `> bool`, `and on (a, b)`, `group_left (x)`.
_MODIFIERS = re.compile(
    r"^\s*(bool\b)?\s*((on|ignoring)\s*\([^)]*\))?\s*((group_left|group_right)\s*(\([^)]*\))?)?",
    re.IGNORECASE,
)


def expr_from_generator_url(url: str) -> str | None:
    """The `g0.expr` of an Alertmanager generatorURL; never used to contact that URL's host."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    values = parse_qs(query).get("g0.expr")
    return values[0].strip() if values and values[0].strip() else None


def _top_level_operators(expr: str) -> list[tuple[int, str]]:
    """(position, operator) of comparison and set operators outside parentheses, braces and strings."""
    found: list[tuple[int, str]] = []
    depth = 0
    quote: str | None = None
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            op = next((c for c in _COMPARISONS if expr.startswith(c, i)), None)
            if op:
                found.append((i, op))
                i += len(op)
                continue
            word = re.match(r"[A-Za-z_]+", expr[i:])
            if word:
                before_ok = i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] in "_:")
                if before_ok and word.group(0).lower() in _SET_OPERATORS:
                    found.append((i, word.group(0).lower()))
                i += len(word.group(0))
                continue
        i += 1
    return found


def _strip_parens(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")") and _balanced(expr[1:-1]):
        expr = expr[1:-1].strip()
    return expr


def _balanced(expr: str) -> bool:
    depth = 0
    for ch in expr:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def context_expr(expr: str) -> str:
    """The expression without its top-level threshold comparison (see module docstring)."""
    body = _strip_parens(expr)
    operators = _top_level_operators(body)
    set_ops = [(pos, op) for pos, op in operators if op in _SET_OPERATORS]
    if set_ops:
        return context_expr(body[: set_ops[0][0]]) if set_ops[0][0] > 0 else expr.strip()
    comparisons = [(pos, op) for pos, op in operators if op in _COMPARISONS]
    if len(comparisons) != 1:
        return body
    pos, op = comparisons[0]
    left = body[:pos].strip()
    right = body[pos + len(op) :]
    modifiers = _MODIFIERS.match(right)
    right = right[modifiers.end() if modifiers else 0 :].strip()
    if not left or not right:
        return body
    if _NUMBER.match(_strip_parens(left)):
        return _strip_parens(right)
    return _strip_parens(left)
