"""Just enough PromQL to turn an alert rule's expression into the series worth plotting.

`rate(errors[5m]) / rate(requests[5m]) > 0.05` fires when the ratio crosses 0.05; the context wants the
ratio itself, before and after it crossed. So the top-level comparison is dropped, keeping the side
that is not a bare number (the left side when neither is); `bool` and `on`/`ignoring`/`group_left`
modifiers go with the operator. A top-level `and`/`or`/`unless` keeps its first operand, and outer
parentheses are stripped. Whatever this does not understand is returned unchanged: a query that shows
too much beats no query.

The structure comes from `promql-parser` (Prometheus' grammar, in Rust). Its nodes carry no source
positions and its printer normalises (`up` becomes `up{}`), so the kept operand is cut from the
original text, where a one-pass tokenizer finds the operator, and parsed again to check the cut.

The expression is attacker-controlled text from the webhook body and the parser is superlinear in
nesting and operators (5,000 nested parentheses take seconds; deeper ones overflow its stack and
kill the process), so the limits below are checked in one linear pass before anything is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import promql_parser
from promql_parser import (
    BinaryExpr,
    Expr,
    Function,
    NumberLiteral,
    ParenExpr,
    UnaryExpr,
    ValueType,
)

MAX_CHARS = 8_192
MAX_DEPTH = 128  # brackets; 128 nested parentheses parse in about 2 ms
MAX_OPERATORS = 256  # binary and unary, quadratic for the parser: 5 to 30 ms at both limits

_COMPARISONS = frozenset({"==", "!=", ">=", "<=", ">", "<"})
_SET_OPERATORS = frozenset({"and", "or", "unless"})
_OPERATORS = _COMPARISONS | _SET_OPERATORS | {"+", "-", "*", "/", "%", "^", "atan2"}
_TOKEN = re.compile(
    r"""
      "(?:[^"\\]|\\.)*"? | '(?:[^'\\]|\\.)*'? | `[^`]*`?   # strings (an unterminated one runs to the end)
    | \#[^\n]*                                           # comment
    | [A-Za-z_:][A-Za-z0-9_:]*                           # name or keyword
    | [0-9.][A-Za-z0-9_.]*                               # number or duration
    | ==|!=|>=|<=|=~|!~
    | \S
    """,
    re.VERBOSE | re.DOTALL,
)
_BOOL = re.compile(r"\s*(bool\b)?", re.IGNORECASE)

# Prometheus 2.x's name for double_exponential_smoothing (renamed in 3.0); the parser knows only that
# one. Registering is process-wide and idempotent.
promql_parser.register_extra_functions(
    [
        Function(
            "holt_winters", [ValueType.Matrix, ValueType.Scalar, ValueType.Scalar], ValueType.Vector
        )
    ]
)


class PromQLError(Exception):
    """The expression cannot be analysed: over a limit or not valid PromQL."""


class _NotUnderstoodError(Exception):
    """The text does not line up with the parsed structure: the expression is kept unchanged."""


def expr_from_generator_url(url: str) -> str | None:
    """The `g0.expr` of an Alertmanager generatorURL; never used to contact that URL's host."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    values = parse_qs(query).get("g0.expr")
    return values[0].strip() if values and values[0].strip() else None


def context_expr(expr: str) -> str:
    """The expression without its top-level threshold comparison (see module docstring).

    Raises PromQLError when the expression is over a limit or is not valid PromQL. Blocking, CPU-bound
    and holding the GIL while the parser runs: milliseconds within the limits.
    """
    text = expr.strip()
    check_limits(text)
    tree = _parse(text)
    try:
        kept, node = _without_threshold(text, tree)
    except _NotUnderstoodError:
        return text
    if kept != text and not _same(kept, node):
        return text
    return kept


_FLIPPED = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}


def threshold(expr: str) -> tuple[str, float] | None:
    """The number an alert's top-level comparison holds its signal against, as (operator, value)
    read signal first: `0.5 < x` gives `("<", ...)` flipped to `(">", 0.5)`; through `and` and
    `unless`, the left side's. None when there is no such number (`a > b`, `x > bool 5`, `a > 1 or
    b < 2`, no comparison, not PromQL, over a limit). Blocking like context_expr."""
    text = expr.strip()
    try:
        check_limits(text)
        node = _parse(text)
    except PromQLError:
        return None
    while True:
        if isinstance(node, ParenExpr):
            node = node.expr
        elif isinstance(node, BinaryExpr) and _op(node) in ("and", "unless"):
            node = node.lhs  # what fires is the left side, filtered by the right
        else:
            break  # `or`: either side may fire, neither threshold is the alert's
    operator = _op(node)
    if not isinstance(node, BinaryExpr) or operator not in _COMPARISONS:
        return None
    if node.modifier is not None and node.modifier.return_bool:
        return None  # `x > bool 5` fires for every series, 0 or 1: there is no threshold
    if _op(node.lhs) in _COMPARISONS:  # `a > b > 1`: as ambiguous as for context_expr
        return None
    if _is_number(node.rhs) and not _is_number(node.lhs):
        return operator, _number(node.rhs)
    if _is_number(node.lhs) and not _is_number(node.rhs):
        return _FLIPPED[operator], _number(node.lhs)
    return None


def _number(node: Expr) -> float:
    """The value of a number literal, maybe in parentheses or negated."""
    if isinstance(node, ParenExpr):
        return _number(node.expr)
    if isinstance(node, UnaryExpr):  # PromQL's only unary operator on a number is `-`
        return -_number(node.expr)
    if isinstance(node, NumberLiteral):
        return float(node.val)
    raise ValueError(f"not a number literal: {node}")


def check_limits(text: str) -> None:
    """Refuse, in one linear pass, what would make the parser slow or overflow its stack."""
    if len(text) > MAX_CHARS:
        raise PromQLError(
            f"expression too long to analyse ({len(text)} characters, limit {MAX_CHARS})"
        )
    deepest = operators = 0
    for _, token, depth in _tokens(text):
        if token in ("(", "[", "{"):
            deepest = max(deepest, depth + 1)
        elif token.lower() in _OPERATORS:
            operators += 1
    if deepest > MAX_DEPTH:
        raise PromQLError(
            f"expression too deeply nested to analyse ({deepest} levels, limit {MAX_DEPTH})"
        )
    if operators > MAX_OPERATORS:
        raise PromQLError(
            f"expression has too many operators to analyse ({operators}, limit {MAX_OPERATORS})"
        )


def _parse(text: str) -> Expr:
    try:
        return promql_parser.parse(text)
    except ValueError as exc:
        reason = " ".join(str(exc).split())
        reason = reason if len(reason) <= 200 else reason[:199] + "…"
        raise PromQLError(f"expression is not valid PromQL: {reason}") from exc


def _tokens(text: str) -> Iterator[tuple[int, str, int]]:
    """(position, token, bracket depth outside it) of every token but strings and comments."""
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] in "\"'`#":
            continue
        if token in (")", "]", "}"):
            depth -= 1
        yield match.start(), token, depth
        if token in ("(", "[", "{"):
            depth += 1


def _op(node: Expr) -> str | None:
    return str(node.op).lower() if isinstance(node, BinaryExpr) else None


def _without_threshold(text: str, node: Expr) -> tuple[str, Expr]:
    """The kept operand's text and node; raises _NotUnderstoodError where the text does not line up."""
    text, node = _strip_parens(text, node)
    while isinstance(node, BinaryExpr) and _op(node) in _SET_OPERATORS:
        first = node.lhs
        while isinstance(first, BinaryExpr) and _op(first) in _SET_OPERATORS:
            first = first.lhs
        cut, _ = _top_level(text, _SET_OPERATORS)[0]
        text, node = _strip_parens(text[:cut], first)
    if not isinstance(node, BinaryExpr) or _op(node) not in _COMPARISONS:
        return text, node
    if _op(node.lhs) in _COMPARISONS:  # `a > b > c`: which side is the signal is anyone's guess
        return text, node
    comparisons = _top_level(text, _COMPARISONS)
    if len(comparisons) != 1:
        raise _NotUnderstoodError(text)
    position, operator = comparisons[0]
    if _is_number(node.lhs):
        after = position + len(operator)
        modifier = _BOOL.match(text, after)
        return _strip_parens(text[modifier.end() if modifier else after :], node.rhs)
    return _strip_parens(text[:position], node.lhs)


def _top_level(text: str, operators: frozenset[str]) -> list[tuple[int, str]]:
    """(position, operator) of `operators` outside brackets; _NotUnderstoodError when there are none."""
    found = [(pos, token.lower()) for pos, token, depth in _tokens(text) if depth == 0]
    found = [(pos, token) for pos, token in found if token in operators]
    if not found:
        raise _NotUnderstoodError(text)
    return found


def _strip_parens(text: str, node: Expr) -> tuple[str, Expr]:
    text = text.strip()
    while isinstance(node, ParenExpr):
        if not (text.startswith("(") and text.endswith(")")):
            raise _NotUnderstoodError(text)
        text, node = text[1:-1].strip(), node.expr
    return text, node


def _is_number(node: Expr) -> bool:
    while isinstance(node, ParenExpr | UnaryExpr):
        node = node.expr
    return isinstance(node, NumberLiteral)


def _same(text: str, node: Expr) -> bool:
    """Whether `text` parses to `node`: the check that the cut kept exactly the chosen operand."""
    try:
        return str(promql_parser.parse(text)) == str(node)
    except ValueError:
        return False
