"""The ScalePlan CRD on a real kube-apiserver: defaults, rejections, status subresource,
printer columns, and agreement between the server's validation and the pydantic models."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from phaseshift import api
from phaseshift.api import InvalidSpec, parse_plan
from phaseshift.crd import crd

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("scaleplan_crd")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def custom(kube: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def create(
    kube: client.ApiClient, namespace: str, obj: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    created: Any = custom(kube).create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, obj, **kwargs
    )
    return dict(created)


def get(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    got: Any = custom(kube).get_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name
    )
    return dict(got)


def rejection(err: ApiException) -> str:
    message: str = json.loads(err.body or "{}")["message"]
    return message


# ------------------------------------------------------------------------ examples


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_applies_and_reads_back_with_defaults(
    path: Path, kubectl: Any, kube: client.ApiClient, namespace: str
) -> None:
    local = yaml.safe_load(path.read_text())
    kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))
    served = get(kube, namespace, local["metadata"]["name"])
    # the server filled in exactly the defaults the models fill in
    assert served["spec"] == parse_plan(local).spec.to_json()
    assert parse_plan(served).spec == parse_plan(local).spec


def test_a_plan_with_no_spec_gets_every_default(kube: client.ApiClient, namespace: str) -> None:
    obj = body("bare", {})
    del obj["spec"]
    served = create(kube, namespace, obj)
    assert served["spec"] == api.ScalePlanSpec().to_json()
    assert parse_plan(served).threshold_for(2) == {"activeUsers": 100_000}


# ------------------------------------------------------------- invalid plans rejected

USERS = "activeUsers"
INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "phase-above-3",
        {"phases": [{"phase": 4, "promoteWhen": {USERS: 1}}]},
        "spec.phases[0].phase",
    ),
    ("phase-zero", {"phases": [{"phase": 0, "promoteWhen": {USERS: 1}}]}, "spec.phases[0].phase"),
    (
        "phase-twice",
        {
            "phases": [
                {"phase": 1, "promoteWhen": {USERS: 1}},
                {"phase": 1, "promoteWhen": {USERS: 2}},
            ]
        },
        "spec.phases[1]",
    ),
    (
        "thresholds-not-increasing",
        {
            "phases": [
                {"phase": 1, "promoteWhen": {USERS: 500}},
                {"phase": 2, "promoteWhen": {USERS: 500}},
            ]
        },
        "spec.phases",
    ),
    (
        "thresholds-decreasing-out-of-order",
        {
            "phases": [
                {"phase": 3, "promoteWhen": {USERS: 10}},
                {"phase": 1, "promoteWhen": {USERS: 20}},
            ]
        },
        "spec.phases",
    ),
    (
        "promote-when-empty",
        {"phases": [{"phase": 1, "promoteWhen": {}}]},
        "spec.phases[0].promoteWhen",
    ),
    (
        "negative-threshold",
        {"phases": [{"phase": 1, "promoteWhen": {USERS: -1}}]},
        "spec.phases[0].promoteWhen.activeUsers",
    ),
    (
        "undefined-signal",
        {"phases": [{"phase": 1, "promoteWhen": {"queueDepth": 10}}]},
        "spec.phases",
    ),
    (
        "too-many-phases",
        {"phases": [{"phase": 1, "promoteWhen": {USERS: n}} for n in range(4)]},
        "spec.phases",
    ),
    ("min-above-max", {"policy": {"minPhase": 3, "maxPhase": 2}}, "spec.policy.minPhase"),
    ("max-phase-5", {"policy": {"maxPhase": 5}}, "spec.policy.maxPhase"),
    ("manual-without-approvers", {"policy": {"approval": "Manual"}}, "spec.policy.approvers"),
    ("approval-unknown", {"policy": {"approval": "Sometimes"}}, "spec.policy.approval"),
    ("approver-twice", {"policy": {"approvers": ["alice", "alice"]}}, "spec.policy.approvers[1]"),
    (
        "hysteresis-zero",
        {"policy": {"demotion": {"hysteresis": 0}}},
        "spec.policy.demotion.hysteresis",
    ),
    (
        "hysteresis-one",
        {"policy": {"demotion": {"hysteresis": 1}}},
        "spec.policy.demotion.hysteresis",
    ),
    (
        "stateful-tiers-delete",
        {"policy": {"demotion": {"statefulTiers": "Delete"}}},
        "spec.policy.demotion.statefulTiers",
    ),
    (
        "interval-zero",
        {"policy": {"evaluationIntervalSeconds": 0}},
        "spec.policy.evaluationIntervalSeconds",
    ),
    (
        "interval-too-long",
        {"policy": {"evaluationIntervalSeconds": 86_400}},
        "spec.policy.evaluationIntervalSeconds",
    ),
    (
        "lookback-too-short",
        {"policy": {"promotion": {"predictive": {"lookbackSeconds": 5}}}},
        "spec.policy.promotion.predictive.lookbackSeconds",
    ),
    (
        "cooldown-negative",
        {"policy": {"promotion": {"cooldownSeconds": -1}}},
        "spec.policy.promotion.cooldownSeconds",
    ),
    ("signals-empty", {"metrics": {"signals": {}}}, "spec.metrics.signals"),
    (
        "signal-name-with-dash",
        {"metrics": {"signals": {"active-users": "up"}}},
        "spec.metrics.signals",
    ),
    ("promql-empty", {"metrics": {"signals": {USERS: ""}}}, "spec.metrics.signals.activeUsers"),
    (
        "url-without-scheme",
        {"metrics": {"prometheusUrl": "prometheus:9090"}},
        "spec.metrics.prometheusUrl",
    ),
    (
        "query-timeout-zero",
        {"metrics": {"queryTimeoutSeconds": 0}},
        "spec.metrics.queryTimeoutSeconds",
    ),
    ("port-too-high", {"app": {"port": 70_000}}, "spec.app.port"),
    ("image-empty", {"app": {"image": ""}}, "spec.app.image"),
    ("image-with-space", {"app": {"image": "sample app:1"}}, "spec.app.image"),
    (
        "cpu-not-a-quantity",
        {"app": {"resources": {"requests": {"cpu": "lots"}}}},
        "spec.app.resources.requests.cpu",
    ),
    (
        "memory-negative",
        {"app": {"resources": {"limits": {"memory": -1}}}},
        "spec.app.resources.limits.memory",
    ),
    ("env-twice", {"app": {"env": [{"name": "A"}, {"name": "A"}]}}, "spec.app.env[1]"),
    (
        "hpa-min-above-max",
        {"overrides": [{"phase": 3, "hpa": {"minReplicas": 5, "maxReplicas": 2}}]},
        "spec.overrides[0].hpa.minReplicas",
    ),
    ("override-phase-5", {"overrides": [{"phase": 5}]}, "spec.overrides[0].phase"),
    ("override-twice", {"overrides": [{"phase": 2}, {"phase": 2}]}, "spec.overrides[1]"),
    (
        "image-component-uppercase",
        {"overrides": [{"phase": 3, "images": {"Postgres": "postgres:16"}}]},
        "spec.overrides[0].images",
    ),
    ("shards-zero", {"overrides": [{"phase": 3, "shards": 0}]}, "spec.overrides[0].shards"),
    (
        "redis-cluster-of-four",
        {"overrides": [{"phase": 3, "components": {"redis": {"nodes": 4}}}]},
        "spec.overrides[0].components.redis.nodes",
    ),
    (
        "redis-cluster-odd",
        {"overrides": [{"phase": 3, "components": {"redis": {"nodes": 7}}}]},
        "spec.overrides[0].components.redis.nodes",
    ),
    (
        "rabbitmq-even",
        {"overrides": [{"phase": 3, "components": {"rabbitmq": {"nodes": 2}}}]},
        "spec.overrides[0].components.rabbitmq.nodes",
    ),
    (
        "kafka-even",
        {"overrides": [{"phase": 4, "components": {"kafka": {"nodes": 4}}}]},
        "spec.overrides[0].components.kafka.nodes",
    ),
    (
        "kafka-in-phase-2",
        {"overrides": [{"phase": 2, "components": {"kafka": {"nodes": 3}}}]},
        "spec.overrides[0].components.kafka",
    ),
    (
        "postgres-storage-differs",
        {
            "overrides": [
                {"phase": 2, "components": {"postgres": {"storage": "5Gi"}}},
                {"phase": 3, "components": {"postgres": {"storage": "6Gi"}}},
            ]
        },
        "spec.overrides",
    ),
    ("mesh-consul", {"mesh": {"provider": "Consul"}}, "spec.mesh.provider"),
    (
        "slo-error-rate-one",
        {"observability": {"sloErrorRate": 1}},
        "spec.observability.sloErrorRate",
    ),
    (
        "canary-weight-zero",
        {"rollout": {"canary": {"weightPercent": 0}}},
        "spec.rollout.canary.weightPercent",
    ),
    ("paused-not-bool", {"policy": {"paused": "sometimes"}}, "spec.policy.paused"),
]


@pytest.mark.parametrize(("name", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_the_api_server_rejects_an_invalid_plan_naming_the_field(
    name: str, spec: dict[str, Any], field: str, kube: client.ApiClient, namespace: str
) -> None:
    with pytest.raises(ApiException) as raised:
        create(kube, namespace, body(name, spec))
    assert raised.value.status == 422, raised.value.body
    assert f"{field}:" in rejection(raised.value)
    # the operator's own parsing refuses the same plan
    with pytest.raises(InvalidSpec):
        parse_plan(body(name, spec))


def test_at_least_twenty_distinct_invalid_plans() -> None:
    assert len({json.dumps(spec, sort_keys=True) for _, spec, _ in INVALID}) >= 20


def test_unknown_fields_are_refused_under_strict_validation(
    kube: client.ApiClient, namespace: str
) -> None:
    with pytest.raises(ApiException) as raised:
        create(kube, namespace, body("typo", {"app": {"imagee": "x"}}), field_validation="Strict")
    assert "spec.app.imagee" in rejection(raised.value)


# --------------------------------------------------------------- status subresource

STATUS: dict[str, Any] = {
    "phase": 2,
    "targetPhase": 3,
    "observedGeneration": 1,
    "users": 123_456,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Reconciled",
            "message": "phase 2 is serving",
            "lastTransitionTime": "2025-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
    ],
}


@pytest.fixture
def shop(kube: client.ApiClient, namespace: str) -> Iterator[dict[str, Any]]:
    yield create(kube, namespace, body("shop", {}))


def test_status_changes_only_through_the_status_subresource(
    kube: client.ApiClient, namespace: str, shop: dict[str, Any]
) -> None:
    objects = custom(kube)
    args = (api.GROUP, api.VERSION, namespace, api.PLURAL, "shop")

    # a write to the main resource ignores status ...
    objects.patch_namespaced_custom_object(*args, {"status": STATUS})
    assert "phase" not in get(kube, namespace, "shop").get("status", {})

    # ... and a write to the status subresource ignores spec, and leaves generation alone
    objects.patch_namespaced_custom_object_status(
        *args, {"spec": {"policy": {"paused": True}}, "status": STATUS}
    )
    served = get(kube, namespace, "shop")
    assert served["spec"]["policy"]["paused"] is False
    assert served["metadata"]["generation"] == shop["metadata"]["generation"]
    status = parse_plan(served).status
    assert (status.phase, status.target_phase, status.users) == (2, 3, 123_456)
    ready = status.condition(api.ConditionType.READY)
    assert ready is not None and ready.status == "True"

    # a spec change bumps the generation the operator reports back as observedGeneration
    objects.patch_namespaced_custom_object(*args, {"spec": {"policy": {"paused": True}}})
    assert (
        get(kube, namespace, "shop")["metadata"]["generation"] == shop["metadata"]["generation"] + 1
    )


def test_the_server_validates_the_status_too(
    kube: client.ApiClient, namespace: str, shop: dict[str, Any]
) -> None:
    bad = {**STATUS, "conditions": [{**STATUS["conditions"][0], "status": "Maybe"}]}
    with pytest.raises(ApiException) as raised:
        custom(kube).patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, namespace, api.PLURAL, "shop", {"status": bad}
        )
    assert "status.conditions[0].status" in rejection(raised.value)


def test_status_written_from_the_models_is_accepted(
    kube: client.ApiClient, namespace: str, shop: dict[str, Any]
) -> None:
    history = [
        api.HistoryEntry.model_validate(
            {"from": 1, "to": 2, "at": f"2025-01-01T00:{i:02d}:00Z", "reason": "Promoted"}
        )
        for i in range(api.HISTORY_LIMIT)
    ]
    status = api.ScalePlanStatus(
        phase=1,
        target_phase=2,
        live_colour="blue",
        transition=api.Transition.model_validate(
            {
                "from": 1,
                "to": 2,
                "steps": ["provision", "switch"],
                "startedAt": "2025-01-01T00:00:00Z",
            }
        ),
        last_decision=api.Decision.model_validate(
            {
                "at": "2025-01-01T00:00:00Z",
                "target": 2,
                "reason": "ThresholdExceeded",
                "signals": {USERS: 1500.5},
            }
        ),
        release=api.Release(revision="0123456789", app=api.App(image="registry.example/shop:1")),
        rollout=api.RolloutStatus.model_validate(
            {
                "revision": "abcdef0123",
                "image": "registry.example/shop:2",
                "strategy": "Canary",
                "state": "Progressing",
                "step": "Analyse",
                "startedAt": "2025-01-01T00:00:00Z",
                "canary": {"iteration": 2, "failedChecks": 1, "weightPercent": 30},
            }
        ),
        history=history,
    )
    custom(kube).patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "shop", {"status": status.to_json()}
    )
    assert parse_plan(get(kube, namespace, "shop")).status == status


# ------------------------------------------------------------------ printer columns


def test_kubectl_get_sp_prints_the_columns(
    kubectl: Any, kube: client.ApiClient, namespace: str, shop: dict[str, Any]
) -> None:
    custom(kube).patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "shop", {"status": STATUS}
    )
    header, row = kubectl("get", "sp", "-n", namespace).stdout.strip().splitlines()
    assert header.split() == ["NAME", "PHASE", "TARGET", "READY", "USERS", "AGE"]
    assert row.split()[:5] == ["shop", "2", "3", "True", "123456"]
    rollout = {
        "release": {"revision": "abc", "app": {"image": "registry.example/shop:1"}},
        "rollout": {
            "revision": "def",
            "image": "registry.example/shop:2",
            "strategy": "BlueGreen",
            "state": "Progressing",
            "step": "Grace",
            "startedAt": "2025-01-01T00:00:00Z",
        },
    }
    custom(kube).patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "shop", {"status": rollout}
    )
    header, row = kubectl("get", "sp", "-n", namespace, "-o", "wide").stdout.strip().splitlines()
    assert header.split()[-3:] == ["IMAGE", "ROLLOUT", "STEP"]
    assert row.split()[-3:] == ["registry.example/shop:1", "Progressing", "Grace"]


# ------------------------------------------- pydantic and the CRD agree (property test)

SPEC_SCHEMA: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
    "properties"
]["spec"]
# Map keys come from small pools, so signals named in phases are sometimes defined and
# sometimes not, and some keys break the key patterns.
SIGNAL_KEYS = st.sampled_from(
    ["activeUsers", "rps", "p95LatencySeconds", "queueDepth", "q_1", "bad-key"]
)
COMPONENT_KEYS = st.sampled_from(["postgres", "redis", "api-gateway", "Bad_Key"])
QUANTITIES = st.one_of(
    st.integers(0, 64), st.sampled_from(["250m", "1", "1.5", "512Mi", "2Gi", "1e3", ".5"])
)


def values(schema: dict[str, Any], key: str = "") -> st.SearchStrategy[Any]:
    """Values that satisfy one schema node on its own (cross-field rules may still fail)."""
    if schema.get("x-kubernetes-int-or-string"):
        return QUANTITIES
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(
            schema.get("minimum"),
            schema.get("maximum"),
            exclude_min=bool(schema.get("exclusiveMinimum")),
            exclude_max=bool(schema.get("exclusiveMaximum")),
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "string":
        longest = min(schema.get("maxLength", 40), 40)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: schema.get("minLength", 0) <= len(s) <= schema.get("maxLength", 10**6)
            )
        return st.text(min_size=schema.get("minLength", 0), max_size=longest)
    if kind == "array":
        items = values(schema["items"])
        return st.lists(items, max_size=min(schema.get("maxItems", 3), 3))
    if "additionalProperties" in schema:
        keys = COMPONENT_KEYS if key == "images" else SIGNAL_KEYS
        return st.dictionaries(
            keys,
            values(schema["additionalProperties"]),
            min_size=schema.get("minProperties", 0),
            max_size=min(schema.get("maxProperties", 3), 3),
        )
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {n: values(p, n) for n, p in properties.items() if n in required},
        optional={n: values(p, n) for n, p in properties.items() if n not in required},
    )


def out_of_range(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value of the right JSON type that breaks this node's own bounds."""
    kind = schema.get("type")
    if "enum" in schema:
        return st.just("Bogus")
    if kind in {"integer", "number"}:
        bad = []
        if "minimum" in schema:
            bad += [schema["minimum"] - 1] + (
                [schema["minimum"]] if schema.get("exclusiveMinimum") else []
            )
        if "maximum" in schema:
            bad += [schema["maximum"] + 1] + (
                [schema["maximum"]] if schema.get("exclusiveMaximum") else []
            )
        return st.sampled_from(bad) if bad else values(schema)
    if kind == "string":
        if "maxLength" in schema:
            return st.just("x" * (schema["maxLength"] + 1))
        return st.just(" not valid ")
    return values(schema)


def leaves(
    value: Any, schema: dict[str, Any], path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    if isinstance(value, dict) and "properties" in schema:
        for name, child in value.items():
            yield from leaves(child, schema["properties"][name], (*path, name))
    elif isinstance(value, dict) and "additionalProperties" in schema:
        for name, child in value.items():
            yield from leaves(child, schema["additionalProperties"], (*path, name))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from leaves(child, schema["items"], (*path, i))
    else:
        yield path, schema


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """Specs built from the schema of the models, half of them with one value out of range."""
    spec: dict[str, Any] = draw(values(SPEC_SCHEMA))
    candidates = [(path, s) for path, s in leaves(spec, SPEC_SCHEMA) if path]
    corrupt = draw(st.booleans())
    if candidates and corrupt:
        path, schema = draw(st.sampled_from(candidates))
        spec = copy.deepcopy(spec)
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = draw(out_of_range(schema))
    return spec


def server_verdict(
    kube: client.ApiClient, namespace: str, spec: dict[str, Any]
) -> dict[str, Any] | None:
    """The spec as the server would store it, or None when the server rejects it."""
    try:
        return create(kube, namespace, body("generated", spec), dry_run="All")["spec"]
    except ApiException as err:
        assert err.status == 422, err.body
        return None


def pydantic_verdict(spec: dict[str, Any]) -> api.ScalePlanSpec | None:
    try:
        return parse_plan(body("generated", spec)).spec
    except InvalidSpec:
        return None


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=specs())
def test_pydantic_and_the_api_server_agree(
    spec: dict[str, Any], kube: client.ApiClient, namespace: str
) -> None:
    served = server_verdict(kube, namespace, spec)
    parsed = pydantic_verdict(spec)
    event(f"server {'accepted' if served is not None else 'rejected'}")
    if served is not None:
        # whatever the server accepts parses, with the same defaults filled in
        assert parsed is not None, f"server accepted, pydantic refused: {spec}"
        assert parse_plan(body("generated", served)).spec == parsed
    if parsed is not None:
        # whatever the models accept, the server stores unchanged
        assert server_verdict(kube, namespace, parsed.to_json()) == parsed.to_json()
