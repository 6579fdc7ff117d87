"""Building the signal queries and reading their answers, without a server."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_api_client import PrometheusApiClientException

from phaseshift.api import DEFAULT_SIGNALS, ScalePlan, parse_plan
from phaseshift.promql import (
    STAT_LABEL,
    AmbiguousAnswer,
    LabelsDropped,
    PlanKey,
    TemplateShape,
    Windows,
    combined_query,
    fill_for_group,
    fill_for_plan,
    group_signals,
    reading_from,
    regex_alternation,
    split_by_plan,
)
from phaseshift.signals import fetch_signals, server_message

USERS = DEFAULT_SIGNALS["activeUsers"]


def make_plan(name: str, namespace: str = "web", **spec: Any) -> ScalePlan:
    return parse_plan({"metadata": {"name": name, "namespace": namespace}, "spec": spec})


def series(stat: str, value: str, **labels: str) -> dict[str, Any]:
    return {"metric": {STAT_LABEL: stat, **labels}, "value": [1_700_000_000.0, value]}


def unquote(body: str) -> str:
    """A PromQL double-quoted string's body as the regex Prometheus compiles."""
    return re.sub(r"\\(.)", r"\1", body)


# ------------------------------------------------------------------------- templates


@pytest.mark.parametrize("name", sorted(DEFAULT_SIGNALS))
def test_every_default_signal_can_be_batched(name: str) -> None:
    shape = TemplateShape.of(DEFAULT_SIGNALS[name])
    assert shape == TemplateShape(plan_label="plan", namespace_label="namespace")
    assert shape.batchable


@pytest.mark.parametrize(
    "template",
    [
        'sum(up{job="$plan-app"})',  # a placeholder inside a longer value
        'sum(app_active_users{plan="$plan"})',  # no namespace: names clash across namespaces
        'sum(x{plan="$plan"}) + sum(y{app="$plan",namespace="$namespace"})',  # two labels
    ],
)
def test_templates_that_cannot_be_batched(template: str) -> None:
    assert not TemplateShape.of(template).batchable


def test_a_regex_alternation_matches_exactly_the_names() -> None:
    pattern = unquote(regex_alternation(["shop.v1", "cart"]))
    assert re.fullmatch(pattern, "shop.v1")
    assert re.fullmatch(pattern, "cart")
    assert not re.fullmatch(pattern, "shopxv1")
    assert not re.fullmatch(pattern, "cart2")


def test_a_group_matches_every_plan_and_a_plan_only_itself() -> None:
    keys = [PlanKey("web", "shop"), PlanKey("web", "cart"), PlanKey("api", "shop")]
    group = fill_for_group(USERS, TemplateShape.of(USERS), keys)
    assert 'plan=~"cart|shop"' in group and 'namespace=~"api|web"' in group
    assert "$" not in group
    one = fill_for_plan(USERS, PlanKey("web", "shop"))
    assert 'namespace="web",plan="shop"' in one and "$" not in one


def test_the_combined_query_carries_every_statistic_once() -> None:
    windows = Windows(promotion=60, demotion=900, lead=120, lookback=300, interval=15)
    query = combined_query(USERS, windows, keep=("namespace", "plan"))
    stats = re.findall(rf'"{STAT_LABEL}", "(\w+)", "", ""\)', query)
    assert sorted(stats) == sorted(
        [
            "current", "windowMin", "promotionCount", "windowMax", "demotionCount",
            "predicted", "lookbackCount", "age", "0",
        ]
    )  # fmt: skip
    assert "min_over_time((" in query and "[60s:6s]" in query
    assert "max_over_time((" in query and "[900s:15s]" in query
    assert "predict_linear((" in query and "[300s:15s], 120)" in query
    assert "max by (namespace, plan) (label_replace(timestamp(app_active_users{" in query


def test_windows_of_zero_length_add_no_subqueries() -> None:
    query = combined_query(USERS, Windows(promotion=0, demotion=0, lead=0, lookback=0, interval=15))
    assert "_over_time" not in query and "predict_linear" not in query


def test_a_template_without_plan_selectors_has_no_freshness_statistic() -> None:
    query = combined_query("vector(1)", Windows(0, 0, 0, 0, 15))
    assert "timestamp" not in query


# --------------------------------------------------------------------------- windows


def test_windows_follow_the_policy() -> None:
    assert Windows.of(make_plan("shop")) == Windows(
        promotion=60, demotion=900, lead=0, lookback=0, interval=15
    )
    predictive = make_plan(
        "shop",
        policy={
            "evaluationIntervalSeconds": 5,
            "promotion": {"stabilizationSeconds": 300, "predictive": {"leadSeconds": 60}},
            "demotion": {"enabled": False},
        },
    )
    assert Windows.of(predictive) == Windows(
        promotion=300, demotion=0, lead=60, lookback=300, interval=5
    )


def test_a_window_is_covered_only_when_nearly_all_its_points_have_data() -> None:
    windows = Windows(promotion=60, demotion=900, lead=0, lookback=0, interval=15)
    assert windows.covers(10, 60)
    assert windows.covers(9, 60)
    assert not windows.covers(8, 60)
    assert not windows.covers(None, 60)
    # The long window is sampled once per evaluation interval: 60 points in 900s.
    assert windows.step(900) == 15
    assert windows.covers(54, 900)
    assert not windows.covers(53, 900)


# -------------------------------------------------------------------------- grouping


def test_plans_sharing_prometheus_templates_and_windows_share_one_query_per_signal() -> None:
    plans = [make_plan(f"p{i}", namespace=f"ns{i % 3}") for i in range(10)]
    groups = group_signals(plans)
    assert len(groups) == len(DEFAULT_SIGNALS)
    assert all(len(g.plans) == 10 and g.batched for g in groups)


def test_a_different_prometheus_or_window_is_another_group() -> None:
    plans = [
        make_plan("a"),
        make_plan("b"),
        make_plan("c", metrics={"prometheusUrl": "http://other:9090"}),
        make_plan("d", policy={"promotion": {"stabilizationSeconds": 30}}),
    ]
    sizes = sorted(len(g.plans) for g in group_signals(plans))
    assert sizes == [1] * 8 + [2] * 4


def test_a_lone_plan_is_queried_with_its_own_names() -> None:
    (group,) = [g for g in group_signals([make_plan("shop")]) if g.template == USERS]
    assert not group.batched
    assert 'plan="shop"' in group.plan_query(PlanKey("web", "shop"))


# ------------------------------------------------------------------------ answers


def test_a_batched_answer_is_split_by_plan() -> None:
    result = [
        series("current", "12", namespace="web", plan="shop"),
        series("windowMin", "10", namespace="web", plan="shop"),
        series("current", "3", namespace="web", plan="cart"),
    ]
    split = split_by_plan(result, TemplateShape.of(USERS))
    assert split == {
        PlanKey("web", "shop"): {"current": 12.0, "windowMin": 10.0},
        PlanKey("web", "cart"): {"current": 3.0},
    }


def test_an_answer_without_the_plan_labels_cannot_be_split() -> None:
    with pytest.raises(LabelsDropped):
        split_by_plan([series("current", "12")], TemplateShape.of(USERS))


def test_two_series_for_one_plan_and_statistic_are_refused() -> None:
    result = [
        series("current", "1", namespace="web", plan="shop", pod="a"),
        series("current", "2", namespace="web", plan="shop", pod="b"),
    ]
    with pytest.raises(AmbiguousAnswer, match="more than one series"):
        split_by_plan(result, TemplateShape.of(USERS))


def test_a_reading_from_statistics() -> None:
    windows = Windows(promotion=60, demotion=900, lead=120, lookback=300, interval=15)
    stats = {
        "current": 1_200.0,
        "windowMin": 1_050.0,
        "promotionCount": 10.0,
        "windowMax": 1_300.0,
        "demotionCount": 40.0,
        "predicted": 2_000.0,
        "lookbackCount": 50.0,
        "age": 0.5,
    }
    reading = reading_from(stats, windows)
    assert (reading.current, reading.window_min, reading.window_max) == (1_200, 1_050, 1_300)
    assert reading.covered and not reading.demotion_covered
    assert reading.predicted == 2_000 and reading.age_seconds == 0.5
    assert reading_from({**stats, "lookbackCount": 10.0}, windows).predicted is None


def test_without_windows_the_current_value_stands_for_them() -> None:
    reading = reading_from({"current": 7.0}, Windows(0, 0, 0, 0, 15))
    assert (reading.window_min, reading.window_max, reading.covered) == (7.0, 7.0, True)
    assert reading.predicted is None
    empty = reading_from({}, Windows(0, 0, 0, 0, 15))
    assert empty.current is None and not empty.covered


def test_the_servers_error_is_taken_out_of_the_clients_exception() -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}'
    # The text prometheus-api-client builds from a non-200 answer.
    error = PrometheusApiClientException(f"HTTP Status Code 400 ({body!r})")
    assert server_message(error) == "bad_data: 1:5: parse error: unexpected (HTTP 400)"
    assert server_message(PrometheusApiClientException("odd")) == "odd"


# ------------------------------------------------------------------------ the client


class DroppingClient:
    """A Prometheus whose every answer is one series without the plans' labels."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def custom_query(
        self, query: str, params: dict[str, Any] | None = None, timeout: int | None = None
    ) -> Any:
        self.queries.append(query)
        return [series("current", "5")]

    def close(self) -> None:
        pass


def test_a_template_found_to_drop_the_labels_is_remembered_by_the_caller() -> None:
    total = 'sum(app_active_users{namespace="$namespace",plan="$plan"})'
    plans = [make_plan(f"p{i}", metrics={"signals": {"activeUsers": total}}) for i in range(3)]
    client = DroppingClient()
    ungrouped: set[str] = set()

    def fetch() -> None:
        now = datetime.now(UTC)
        snapshot = fetch_signals(plans, now, client_factory=lambda _: client, ungrouped=ungrouped)
        assert all(s.readings["activeUsers"].current == 5 for s in snapshot.values())

    fetch()
    assert len(client.queries) == 1 + len(plans)  # the batched query, then one per plan
    assert ungrouped == {total}
    client.queries.clear()
    fetch()
    assert len(client.queries) == len(plans)
    # Without a memory, every call tries the batched query again.
    client.queries.clear()
    fetch_signals(plans, datetime.now(UTC), client_factory=lambda _: client)
    assert len(client.queries) == 1 + len(plans)


def test_the_policy_does_not_import_the_prometheus_client() -> None:
    code = (
        "import sys, phaseshift.policy, phaseshift.promql; "
        "print(sorted(m for m in ('requests', 'prometheus_api_client') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
