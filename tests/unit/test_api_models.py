"""The ScalePlan models: defaults, cross-field rules, parse_plan's errors and the helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from phaseshift import api
from phaseshift.api import (
    Condition,
    HistoryEntry,
    InvalidSpec,
    ScalePlanSpec,
    Transition,
    parse_plan,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def plan(spec: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "shop", "namespace": "web", **metadata},
        "spec": spec or {},
    }


def test_an_empty_spec_gets_the_seeds_boundaries() -> None:
    p = parse_plan(plan())
    assert [p.threshold_for(n) for n in (1, 2, 3, 4)] == [
        {"activeUsers": 1_000},
        {"activeUsers": 100_000},
        {"activeUsers": 1_000_000},
        {},
    ]
    assert p.spec.app.image == api.DEFAULT_IMAGE
    assert p.spec.app.port == 8080
    assert set(p.spec.metrics.signals) == {"activeUsers", "rps", "p95LatencySeconds", "errorRate"}
    assert (p.spec.policy.min_phase, p.spec.policy.max_phase) == (1, 4)
    assert p.spec.policy.approval == "Automatic"
    assert p.spec.policy.demotion.stateful_tiers == "Retain"
    assert p.status.phase is None and p.status.conditions == []


def test_wire_names_are_camel_case_and_round_trip() -> None:
    spec = ScalePlanSpec(overrides=[{"phase": 3, "hpa": {"targetCPUUtilizationPercentage": 70}}])
    body = spec.to_json()
    assert body["policy"]["promotion"]["predictive"] == {"leadSeconds": 0, "lookbackSeconds": 300}
    assert body["overrides"] == [{"phase": 3, "hpa": {"targetCPUUtilizationPercentage": 70}}]
    assert "app_resources" not in str(body)
    assert ScalePlanSpec.model_validate(body) == spec


def test_a_mutable_default_is_not_shared_between_plans() -> None:
    a, b = parse_plan(plan()), parse_plan(plan())
    a.spec.metrics.signals["extra"] = "up"
    a.spec.phases[0].promote_when["activeUsers"] = 1
    assert "extra" not in b.spec.metrics.signals
    assert b.threshold_for(1) == {"activeUsers": 1_000}


def test_transition_and_history_use_from_on_the_wire() -> None:
    t = Transition.model_validate({"from": 1, "to": 2, "steps": ["a", "b"], "startedAt": T0})
    assert t.from_ == 1
    assert t.current_step == "a"
    assert t.to_json()["from"] == 1
    assert t.to_json()["startedAt"] == "2025-01-01T00:00:00Z"
    assert t.model_copy(update={"step": 2}).current_step is None


def test_quantities_accept_integers_like_core_kubernetes() -> None:
    spec = ScalePlanSpec.model_validate({"app": {"resources": {"limits": {"cpu": 2}}}})
    assert spec.app.resources is not None and spec.app.resources.limits is not None
    assert spec.app.resources.limits.cpu == "2"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"phases": [{"phase": 4, "promoteWhen": {"activeUsers": 1}}]}, "spec.phases[0].phase"),
        ({"phases": [{"phase": 1, "promoteWhen": {}}]}, "spec.phases[0].promoteWhen"),
        (
            {
                "phases": [
                    {"phase": 1, "promoteWhen": {"activeUsers": 10}},
                    {"phase": 1, "promoteWhen": {"activeUsers": 20}},
                ]
            },
            "spec.phases",
        ),
        (
            {
                "phases": [
                    {"phase": 2, "promoteWhen": {"activeUsers": 10}},
                    {"phase": 1, "promoteWhen": {"activeUsers": 10}},
                ]
            },
            "spec.phases",
        ),
        ({"phases": [{"phase": 1, "promoteWhen": {"queueDepth": 5}}]}, "spec"),
        ({"policy": {"minPhase": 3, "maxPhase": 2}}, "spec.policy"),
        ({"policy": {"approval": "Manual"}}, "spec.policy"),
        ({"policy": {"approvers": ["a", "a"]}}, "spec.policy.approvers"),
        ({"policy": {"demotion": {"hysteresis": 1}}}, "spec.policy.demotion.hysteresis"),
        ({"policy": {"demotion": {"hysteresis": 0}}}, "spec.policy.demotion.hysteresis"),
        ({"policy": {"evaluationIntervalSeconds": 0}}, "spec.policy.evaluationIntervalSeconds"),
        ({"metrics": {"signals": {}}}, "spec.metrics.signals"),
        ({"metrics": {"signals": {"bad-name": "up"}}}, "spec.metrics.signals['bad-name']"),
        ({"metrics": {"prometheusUrl": "prometheus:9090"}}, "spec.metrics.prometheusUrl"),
        ({"app": {"resources": {"requests": {"cpu": "lots"}}}}, "spec.app.resources.requests.cpu"),
        ({"app": {"imagee": "x"}}, "spec.app.imagee"),
        ({"app": {"env": [{"name": "A"}, {"name": "A"}]}}, "spec.app.env"),
        (
            {"overrides": [{"phase": 3, "hpa": {"minReplicas": 5, "maxReplicas": 2}}]},
            "spec.overrides[0].hpa",
        ),
        ({"overrides": [{"phase": 2}, {"phase": 2}]}, "spec.overrides"),
        (
            {"overrides": [{"phase": 3, "hpa": {"behavior": {"scaleUp": {"policies": []}}}}]},
            "spec.overrides[0].hpa.behavior.scaleUp.policies",
        ),
        (
            {
                "overrides": [
                    {
                        "phase": 3,
                        "hpa": {
                            "behavior": {"scaleDown": {"policies": [{"type": "Nodes", "value": 1}]}}
                        },
                    }
                ]
            },
            "spec.overrides[0].hpa.behavior.scaleDown.policies[0].type",
        ),
        ({"mesh": {"provider": "Consul"}}, "spec.mesh.provider"),
    ],
)
def test_parse_plan_names_the_offending_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_plan(plan(spec))
    assert raised.value.message.startswith(f"{field}:"), raised.value.message


def test_parse_plan_accepts_kopf_style_mapping_views() -> None:
    class View(dict[str, Any]):
        """kopf's bodies are Mapping views; any Mapping subclass must do."""

    body = View(plan({"phases": [View({"phase": 1, "promoteWhen": View({"activeUsers": 5})})]}))
    assert parse_plan(body).threshold_for(1) == {"activeUsers": 5}


def test_a_threshold_may_repeat_across_phases_for_different_signals() -> None:
    spec = {
        "phases": [
            {"phase": 1, "promoteWhen": {"activeUsers": 100, "rps": 50}},
            {"phase": 2, "promoteWhen": {"activeUsers": 200, "p95LatencySeconds": 0.5}},
            {"phase": 3, "promoteWhen": {"rps": 60}},
        ]
    }
    assert parse_plan(plan(spec)).threshold_for(3) == {"rps": 60}


def test_approved_phase_reads_the_annotation() -> None:
    def approved(value: str) -> int | None:
        return parse_plan(plan(annotations={api.ANNOTATION_APPROVE: value})).approved_phase()

    assert approved("2") == 2
    assert approved(" 4 ") == 4
    assert approved("5") is None
    assert approved("yes") is None
    assert parse_plan(plan()).approved_phase() is None


def test_signal_queries_fill_in_namespace_and_plan() -> None:
    queries = parse_plan(plan()).signal_queries()
    assert "$" not in "".join(queries.values())
    assert 'namespace="web",plan="shop"' in queries["activeUsers"]


def test_signal_queries_fill_in_only_whole_placeholders() -> None:
    body = plan()
    body["spec"]["metrics"] = {"signals": {"activeUsers": 'x{plan="$plan",p="$planned"}'}}
    assert parse_plan(body).signal_queries() == {"activeUsers": 'x{plan="shop",p="$planned"}'}


def test_managed_labels() -> None:
    assert api.managed_labels("shop", 2, "redis") == {
        "app.kubernetes.io/managed-by": "phaseshift",
        "phaseshift.dev/plan": "shop",
        "phaseshift.dev/phase": "2",
        "phaseshift.dev/component": "redis",
    }


def ready(status: str, at: datetime, reason: str = "Reconciled") -> Condition:
    return Condition(type="Ready", status=status, reason=reason, last_transition_time=at)


def test_set_condition_moves_the_transition_time_only_on_a_status_change() -> None:
    later = T0 + timedelta(minutes=5)
    first = api.set_condition([], ready("True", T0))
    same = api.set_condition(first, ready("True", later, reason="StillFine"))
    assert same[0].last_transition_time == T0 and same[0].reason == "StillFine"
    flipped = api.set_condition(same, ready("False", later))
    assert flipped[0].last_transition_time == later
    other = Condition(type="Degraded", status="False", reason="Ok", last_transition_time=later)
    assert [c.type for c in api.set_condition(flipped, other)] == ["Ready", "Degraded"]


def test_history_keeps_the_newest_twenty() -> None:
    history: list[HistoryEntry] = []
    for i in range(25):
        entry = HistoryEntry(from_=1, to=2, at=T0 + timedelta(seconds=i), reason="Promoted")
        history = api.record_history(history, entry)
    assert len(history) == api.HISTORY_LIMIT
    assert history[0].at == T0 + timedelta(seconds=5)
    assert history[-1].at == T0 + timedelta(seconds=24)


def test_status_ignores_fields_it_does_not_know() -> None:
    p = parse_plan({**plan(), "status": {"phase": 2, "somethingNew": {"a": 1}}})
    assert p.status.phase == 2


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_parses(path: Path) -> None:
    p = parse_plan(yaml.safe_load(path.read_text()))
    assert p.name and p.spec.phases


def test_shop_example_is_named_shop_and_keeps_the_default_signals() -> None:
    p = parse_plan(yaml.safe_load((EXAMPLES / "shop.yaml").read_text()))
    assert p.name == "shop"
    assert p.spec.metrics.signals == api.DEFAULT_SIGNALS
