"""Properties over generated plans: every valid plan renders in every phase to objects
that are well named, labelled, owned, self-consistent and independent of each other."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phaseshift.api import App, ScalePlan, parse_plan
from phaseshift.render import RenderContext, object_key, render_phase
from phaseshift.render.order import KIND_ORDER
from phaseshift.render.scope import ANNOTATION_STATEFUL

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PHASES = (1, 2, 3, 4)

dns_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
plan_names = (
    st.lists(dns_label, min_size=1, max_size=8).map(".".join).filter(lambda n: len(n) <= 253)
)
namespaces = st.from_regex(r"\A[a-z]([-a-z0-9]{0,30}[a-z0-9])?\Z")
images = st.from_regex(r"\A[a-z0-9./-]{1,30}:[a-z0-9.]{1,10}\Z")
quantities = st.sampled_from(["100m", "250m", "1", "2", "128Mi", "1Gi", "3Gi"])
cpu = st.sampled_from(["100m", "250m", "1", "2", "4"])
memory = st.sampled_from(["64Mi", "128Mi", "1Gi", "3Gi", "8Gi"])


@st.composite
def overrides(draw: st.DrawFn) -> list[dict[str, Any]]:
    result = []
    for phase in draw(st.sets(st.sampled_from(PHASES))):
        override: dict[str, Any] = {"phase": phase}
        if draw(st.booleans()):
            override["appReplicas"] = draw(st.integers(0, 50))
        if draw(st.booleans()):
            override["appResources"] = {"requests": {"cpu": draw(cpu), "memory": draw(memory)}}
        if draw(st.booleans()):
            override["readReplicas"] = draw(st.integers(0, 10))
        if draw(st.booleans()):
            override["shards"] = draw(st.integers(1, 16))
        if draw(st.booleans()):
            low = draw(st.integers(1, 20))
            override["hpa"] = {"minReplicas": low, "maxReplicas": draw(st.integers(low, 100))}
        if draw(st.booleans()):
            keys = st.sampled_from(
                ["app", "postgres", "redis", "rabbitmq", "kafka", "nginx", "gateway"]
            )
            override["images"] = draw(st.dictionaries(keys, images, max_size=3))
        result.append(override)
    return result


@st.composite
def plans(draw: st.DrawFn, name: str | None = None) -> ScalePlan:
    spec: dict[str, Any] = {
        "app": {
            "image": draw(images),
            "port": draw(st.integers(1024, 65535)),
            "env": [{"name": "EXTRA", "value": draw(st.text(max_size=20))}]
            if draw(st.booleans())
            else [],
        },
        "overrides": draw(overrides()),
        "mesh": {"provider": draw(st.sampled_from(["None", "Linkerd", "Istio"]))},
        "observability": {
            "serviceMonitor": draw(st.booleans()),
            "prometheusRule": draw(st.booleans()),
        },
    }
    metadata = {"name": name or draw(plan_names), "namespace": draw(namespaces), "uid": "u-1"}
    return parse_plan(
        {
            "apiVersion": "phaseshift.dev/v1alpha1",
            "kind": "ScalePlan",
            "metadata": metadata,
            "spec": spec,
        }
    )


contexts = st.builds(
    RenderContext,
    db_password=st.text(min_size=1, max_size=40),
    live_colour=st.sampled_from(["blue", "green"]),
    next_app=st.none() | st.builds(App, image=images),
    canary_weight=st.integers(min_value=0, max_value=50),
)


def _workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def _containers_of(value: Any, path: str = "") -> list[tuple[int, str]]:
    if isinstance(value, dict):
        return [(id(value), path)] + [
            c for k, v in value.items() for c in _containers_of(v, f"{path}.{k}")
        ]
    if isinstance(value, list):
        return [(id(value), path)] + [
            c for i, v in enumerate(value) for c in _containers_of(v, f"{path}[{i}]")
        ]
    return []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), ctx=contexts)
def test_every_plan_renders_well_formed_objects_in_every_phase(
    plan: ScalePlan, ctx: RenderContext
) -> None:
    for phase in PHASES:
        objects = render_phase(plan, phase, ctx)
        json.dumps(objects)  # plain JSON-ready data
        keys = [object_key(o) for o in objects]
        assert len(keys) == len(set(keys))
        ranks = [KIND_ORDER.index(o["kind"]) for o in objects]
        assert ranks == sorted(ranks)
        for obj in objects:
            meta = obj["metadata"]
            assert DNS_1035.match(meta["name"]) and len(meta["name"]) <= 52, meta["name"]
            assert meta["namespace"] == plan.namespace
            labels = meta["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "phaseshift"
            assert labels["phaseshift.dev/phase"] == str(phase)
            assert labels["phaseshift.dev/component"]
            assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values()), labels
            owners = meta.get("ownerReferences")
            if owners is None:
                # Only data and the keys to it outlive the plan.
                assert meta["annotations"][ANNOTATION_STATEFUL] == "true"
                assert obj["kind"] in ("PersistentVolumeClaim", "Secret")
            else:
                assert owners == [
                    {
                        "apiVersion": "phaseshift.dev/v1alpha1",
                        "kind": "ScalePlan",
                        "name": plan.name,
                        "uid": "u-1",
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), ctx=contexts)
def test_selectors_match_exactly_their_own_pods(plan: ScalePlan, ctx: RenderContext) -> None:
    for phase in PHASES:
        objects = render_phase(plan, phase, ctx)
        workloads = _workloads(objects)
        pods = {
            w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads
        }
        for w in workloads:
            selector = w["spec"]["selector"]["matchLabels"].items()
            matched = [name for name, labels in pods.items() if selector <= labels.items()]
            assert matched == [w["metadata"]["name"]], (phase, matched)
            assert "phaseshift.dev/phase" not in w["spec"]["template"]["metadata"]["labels"]
        for service in (o for o in objects if o["kind"] == "Service"):
            selector = service["spec"]["selector"].items()
            assert any(selector <= labels.items() for labels in pods.values()), service["metadata"][
                "name"
            ]


@settings(max_examples=30, deadline=None)
@given(plan=plans(), ctx=contexts, phase=st.sampled_from(PHASES))
def test_rendering_is_deterministic_and_objects_share_no_containers(
    plan: ScalePlan, ctx: RenderContext, phase: int
) -> None:
    first, second = render_phase(plan, phase, ctx), render_phase(plan, phase, ctx)
    assert first == second
    seen: dict[int, str] = {}
    for obj in first:
        for ident, path in _containers_of(obj, obj["metadata"]["name"]):
            assert ident not in seen, f"{path} is the same object as {seen[ident]}"
            seen[ident] = path


@settings(max_examples=40, deadline=None)
@given(a=plan_names, b=plan_names, namespace=namespaces, phase=st.sampled_from(PHASES))
def test_two_plans_in_one_namespace_never_share_a_name(
    a: str, b: str, namespace: str, phase: int
) -> None:
    if a == b:
        return
    ctx = RenderContext(db_password="pw")

    def rendered_names(name: str) -> set[tuple[str, str]]:
        plan = parse_plan({"metadata": {"name": name, "namespace": namespace}})
        return {(o["kind"], o["metadata"]["name"]) for o in render_phase(plan, phase, ctx)}

    assert not rendered_names(a) & rendered_names(b)
