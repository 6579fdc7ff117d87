"""Every phase of every example, rendered for a real ScalePlan, is accepted by the real
API server (server-side dry-run), applied for real, and brought to Ready by kwok.

kwok's nodes run no containers, so what this proves is the objects: schemas, defaults,
immutable fields, selectors, that claims bind and pods schedule, and that HPAs act.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from phaseshift.api import parse_plan
from phaseshift.lab.wait import wait_for
from phaseshift.render import RenderContext, object_key, render_migration_job, render_phase

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
FIELD_MANAGER = "phaseshift"

# The prometheus-operator CRDs are not part of a bare cluster. These minimal ones accept
# any spec, so the test proves our objects reach the server under the right group,
# version, kind and scope; their schemas are prometheus-operator's to validate.
MONITORING_CRDS = {
    "servicemonitors": "ServiceMonitor",
    "prometheusrules": "PrometheusRule",
}

# One plan beyond the examples with every optional part on: shards, mesh, monitoring.
EVERYTHING_ON: dict[str, Any] = {
    "apiVersion": "phaseshift.dev/v1alpha1",
    "kind": "ScalePlan",
    "metadata": {"name": "everything"},
    "spec": {
        "mesh": {"provider": "Linkerd"},
        "observability": {"serviceMonitor": True, "prometheusRule": True},
        "overrides": [{"phase": 3, "shards": 2}, {"phase": 4, "shards": 3, "readReplicas": 1}],
    },
}


def _crd(plural: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def monitoring_crds(kubectl: Callable[..., Any]) -> Iterator[None]:
    created = []
    for plural, kind in MONITORING_CRDS.items():
        name = f"{plural}.monitoring.coreos.com"
        if kubectl("get", "crd", name, check=False).returncode != 0:
            kubectl("apply", "--server-side", "-f", "-", input=json.dumps(_crd(plural, kind)))
            created.append(name)
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    yield
    for name in created:
        kubectl("delete", "crd", name, "--wait=false", check=False)


def _plan_documents() -> list[tuple[str, dict[str, Any]]]:
    plans = []
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ScalePlan":
                plans.append((path.stem, doc))
    plans.append(("everything-on", EVERYTHING_ON))
    return plans


PLANS = _plan_documents()


def _apply(
    kubectl: Callable[..., Any], namespace: str, objects: list[dict[str, Any]], *extra: str
) -> None:
    kubectl(
        "apply", "-n", namespace, "--server-side", f"--field-manager={FIELD_MANAGER}",
        *extra, "-f", "-", input=yaml.safe_dump_all(objects),
    )  # fmt: skip


def _not_ready(
    kube: client.ApiClient, namespace: str, objects: list[dict[str, Any]]
) -> Callable[[], list[str]]:
    apps = client.AppsV1Api(kube)
    hpa_minimum = {
        o["spec"]["scaleTargetRef"]["name"]: o["spec"]["minReplicas"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }

    def pending() -> list[str]:
        waiting = []
        for obj in objects:
            name = obj["metadata"]["name"]
            if obj["kind"] == "Deployment":
                live = apps.read_namespaced_deployment(name, namespace)
            elif obj["kind"] == "StatefulSet":
                live = apps.read_namespaced_stateful_set(name, namespace)
            else:
                continue
            want = live.spec.replicas if live.spec.replicas is not None else 1
            # An HPA-owned Deployment counts as ready once the HPA raised it to its minimum.
            want = max(want, hpa_minimum.get(name, 0))
            ready = live.status.ready_replicas or 0
            if ready != want or (live.status.observed_generation or 0) < live.metadata.generation:
                waiting.append(f"{obj['kind']}/{name} {ready}/{want}")
        return waiting

    return pending


@pytest.mark.parametrize("phase", [1, 2, 3, 4])
@pytest.mark.parametrize(("example", "document"), PLANS, ids=[p[0] for p in PLANS])
def test_phase_is_accepted_applied_and_ready(
    kube: client.ApiClient,
    kubectl: Callable[..., Any],
    namespace: str,
    scaleplan_crd: None,
    monitoring_crds: None,
    example: str,
    document: dict[str, Any],
    phase: int,
) -> None:
    kubectl("apply", "-n", namespace, "--server-side", "-f", "-", input=json.dumps(document))
    name = document["metadata"]["name"]
    live_plan = json.loads(kubectl("get", "scaleplan", name, "-n", namespace, "-o", "json").stdout)
    plan = parse_plan(live_plan)
    objects = render_phase(plan, phase, RenderContext(db_password="integration-password"))

    _apply(kubectl, namespace, objects, "--dry-run=server")
    if phase == 2:
        # The Job that carries phase 1's data over is accepted too.
        job = render_migration_job(
            plan, RenderContext(db_password="integration-password"), "attempt1"
        )
        _apply(kubectl, namespace, [job], "--dry-run=server")
    _apply(kubectl, namespace, objects)

    listed = json.loads(kubectl("get", "all,cm,secret,pvc,pdb,servicemonitor,prometheusrule",
                                "-n", namespace, "-o", "json").stdout)["items"]  # fmt: skip
    present = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in listed}
    assert {object_key(o) for o in objects} <= present

    wait_for(
        _not_ready(kube, namespace, objects),
        timeout=240,
        what="Deployments and StatefulSets Ready",
        poll=1,
        until=lambda pending: not pending,
    )

    claims = client.CoreV1Api(kube).list_namespaced_persistent_volume_claim(namespace).items
    assert claims, "every phase stores data on a claim"
    assert all(c.status.phase == "Bound" for c in claims), [
        (c.metadata.name, c.status.phase) for c in claims
    ]

    # Applying the same objects again changes nothing on the server: a steady tick writes
    # nothing. Objects with a status are compared by generation (status writes by the
    # controllers bump resourceVersion), the others by resourceVersion.
    before = _versions(kubectl, namespace)
    _apply(
        kubectl,
        namespace,
        render_phase(plan, phase, RenderContext(db_password="integration-password")),
    )
    after = _versions(kubectl, namespace)
    assert before == after


def _versions(kubectl: Callable[..., Any], namespace: str) -> dict[str, str]:
    items = json.loads(
        kubectl(
            "get", "cm,secret,svc,statefulset,deployment,job,hpa,pdb", "-n", namespace, "-o", "json"
        ).stdout
    )["items"]
    versions = {}
    for obj in items:
        meta = obj["metadata"]
        if "phaseshift.dev/plan" not in meta.get("labels", {}):
            continue
        key = f"{obj['kind']}/{meta['name']}"
        versions[key] = (
            str(meta["generation"])
            if "status" in obj and "generation" in meta
            else meta["resourceVersion"]
        )
    return versions
