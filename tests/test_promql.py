import pytest

from app.promql import context_expr, expr_from_generator_url

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


def test_expression_comes_from_g0_expr_of_generator_url() -> None:
    url = "http://vm:19090/graph?g0.expr=api_health_status+%3D%3D+0&g0.tab=1"
    assert expr_from_generator_url(url) == "api_health_status == 0"


@pytest.mark.parametrize("url", ["", "http://vm:9090/graph", "not a url [", "http://[::1"])
def test_missing_or_broken_generator_url_gives_no_expression(url: str) -> None:
    assert expr_from_generator_url(url) is None
