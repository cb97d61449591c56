import time

import pytest

from app.promql import (
    MAX_CHARS,
    MAX_DEPTH,
    MAX_OPERATORS,
    PromQLError,
    context_expr,
    expr_from_generator_url,
    threshold,
)

LATENCY = "sum by (le, exchange) (rate(api_request_latency_seconds_bucket[5m]))"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("api_health_status == 0", "api_health_status"),
        ("api_rate_limit_remaining < 10", "api_rate_limit_remaining"),
        ("0.05 < rate(errors[5m])", "rate(errors[5m])"),
        (
            'sum by (job, instance) (rate(http_requests_total{code=~"5.."}[5m]))'
            " / sum by (job, instance) (rate(http_requests_total[5m])) > 0.05",
            'sum by (job, instance) (rate(http_requests_total{code=~"5.."}[5m]))'
            " / sum by (job, instance) (rate(http_requests_total[5m]))",
        ),
        (f"histogram_quantile(0.99, {LATENCY}) > 1", f"histogram_quantile(0.99, {LATENCY})"),
        ("(up == 0)", "up"),
        ("up > bool 0", "up"),
        ("up == 0 and on(job) vector(1)", "up"),
        ('api_errors{msg=">= weird <"} > 3', 'api_errors{msg=">= weird <"}'),
        ("rate(x[5m])", "rate(x[5m])"),
        ("a > b", "a"),
    ],
)
def test_context_expr_drops_the_top_level_threshold(expr: str, expected: str) -> None:
    assert context_expr(expr) == expected


def test_context_expr_leaves_nested_comparisons_alone() -> None:
    expr = "count(up == 0)"
    assert context_expr(expr) == expr


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0.5 < bool up", "up"),
        ("up > BOOL 0", "up"),
        ("a > on(job) group_left(team) b", "a"),
        ("a * on(job) group_left(team) b > 3", "a * on(job) group_left(team) b"),
        ("a / ignoring(code) group_right b >= bool 0.1", "a / ignoring(code) group_right b"),
        ("a unless on(job) b", "a"),
        ("a or b and c", "a"),
        ("(a and b) or c", "a"),
        ("((up == 0)) or absent(up)", "up"),
        ("up == 0 AND ON(job) x", "up"),
    ],
)
def test_context_expr_handles_bool_vector_matching_and_set_operators(
    expr: str, expected: str
) -> None:
    assert context_expr(expr) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0.5 * y < x", "0.5 * y"),
        ("-1 < -up", "-up"),
        ("(0.05) < rate(errors[5m])", "rate(errors[5m])"),
        ("NaN < x", "x"),
        ("x > 1e-3", "x"),
        ("sum(rate(x[5m])) by (job) > -1", "sum(rate(x[5m])) by (job)"),
        ("holt_winters(x[10m], 0.3, 0.3) < 0", "holt_winters(x[10m], 0.3, 0.3)"),
    ],
)
def test_context_expr_keeps_the_side_that_is_not_a_bare_number_else_the_left(
    expr: str, expected: str
) -> None:
    assert context_expr(expr) == expected


@pytest.mark.parametrize("expr", ["a > b > c", "(up) # a comment", "a + b", '"text"'])
def test_context_expr_returns_what_it_does_not_understand_unchanged(expr: str) -> None:
    assert context_expr(expr) == expr


def test_fifty_thousand_nested_parentheses_are_refused_quickly() -> None:
    expr = "(" * 50_000 + "up" + ")" * 50_000
    started = time.monotonic()
    with pytest.raises(PromQLError, match=r"too long to analyse \(100002 characters"):
        context_expr(expr)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "expr",
    [
        " and ".join(["api_health_status == 0"] * 3_001),
        "(" * 3_000 + "api_health_status == 0" + ") and up" * 3_000,
    ],
    ids=["flat", "left-nested"],
)
def test_three_thousand_chained_ands_are_refused_quickly(expr: str) -> None:
    started = time.monotonic()
    with pytest.raises(PromQLError, match="too long to analyse"):
        context_expr(expr)
    assert time.monotonic() - started < 2


def test_nesting_deeper_than_the_limit_is_refused_before_parsing() -> None:
    assert context_expr("(" * MAX_DEPTH + "up" + ")" * MAX_DEPTH) == "up"
    deeper = "abs(" * (MAX_DEPTH + 1) + "up" + ")" * (MAX_DEPTH + 1)
    assert len(deeper) < MAX_CHARS
    with pytest.raises(PromQLError, match=f"too deeply nested.*{MAX_DEPTH + 1} levels"):
        context_expr(deeper)


def test_more_operators_than_the_limit_are_refused_before_parsing() -> None:
    at_limit = " + ".join(["a"] * (MAX_OPERATORS + 1))
    assert context_expr(at_limit) == at_limit
    chain = ">".join(["a"] * (MAX_OPERATORS + 2))
    with pytest.raises(PromQLError, match=f"too many operators.*{MAX_OPERATORS + 1}"):
        context_expr(chain)


def test_unary_chain_that_would_overflow_the_parser_stack_is_refused() -> None:
    # about 8,000 unary minus signs crash promql-parser with a stack overflow: the whole process
    with pytest.raises(PromQLError, match="too many operators"):
        context_expr("-" * (MAX_CHARS - 2) + "up")


def test_brackets_and_operators_inside_strings_do_not_count_towards_the_limits() -> None:
    inner = "(" * 200 + "a|b" + ")" * 200 + " > < and " * 100
    expr = f'api_errors{{path=~"{inner}", msg="\\" > 1"}} > 3'
    assert context_expr(expr) == f'api_errors{{path=~"{inner}", msg="\\" > 1"}}'


@pytest.mark.parametrize(
    "expr", ["rate(errors[5m]", "up >", "1 > 2", "up{job='a'} == ", "sum by (job (up)"]
)
def test_invalid_promql_is_refused_with_the_parser_reason(expr: str) -> None:
    with pytest.raises(PromQLError, match=r"^expression is not valid PromQL: .+"):
        context_expr(expr)


def test_expression_comes_from_g0_expr_of_generator_url() -> None:
    url = "http://vm:19090/graph?g0.expr=api_health_status+%3D%3D+0&g0.tab=1"
    assert expr_from_generator_url(url) == "api_health_status == 0"


@pytest.mark.parametrize("url", ["", "http://vm:9090/graph", "not a url [", "http://[::1"])
def test_missing_or_broken_generator_url_gives_no_expression(url: str) -> None:
    assert expr_from_generator_url(url) is None


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("api_health_status == 0", ("==", 0.0)),
        ("rate(errors_total[5m]) / rate(requests_total[5m]) > 0.05", (">", 0.05)),
        ("(x >= 2)", (">=", 2.0)),
        ("0.5 < x", (">", 0.5)),  # read signal first
        ("-(2) >= x", ("<=", -2.0)),
        ("x < -3", ("<", -3.0)),
        ("x > 0.9 and on() vector(1)", (">", 0.9)),
        ("(x > 0.9) unless y", (">", 0.9)),
        ("x != 1", ("!=", 1.0)),
    ],
)
def test_threshold_is_the_number_the_signal_is_compared_with(
    expr: str, expected: tuple[str, float]
) -> None:
    assert threshold(expr) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "x > y",
        "x",
        "1 > 2",
        "rate(x[5m]",
        "a > b > 1",
        "x + 1",
        "(" * (MAX_DEPTH + 1) + "x",
        "x > bool 5",
        "x > 5 or y < 3",
    ],
)
def test_no_threshold_without_a_number_to_compare_with(expr: str) -> None:
    assert threshold(expr) is None
