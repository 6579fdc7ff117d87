"""Transition planning: (current phase, target phase, objects) -> ordered, resumable steps.

Pure. The shell (reconcile.py) executes the step at `status.transition.step`, records
progress in status after each one, and so resumes exactly there after a restart. Every
step is idempotent: applying what is already applied, waiting for what is already
Ready, or retiring what is already gone changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from phaseshift.api import LABEL_COMPONENT
from phaseshift.render.scope import ANNOTATION_STATEFUL

# Objects of these components carry the application itself; the rest are backing tiers
# (databases, caches, queues, streams, edges) that must be up before the app points at them.
APP_COMPONENTS = frozenset(
    {"app", "config", "gateway", "user-service", "data-service", "worker", "consumer"}
)

Obj = Mapping[str, Any]
Key = tuple[str, str, str]


class Step(StrEnum):
    PROVISION = "Provision"
    WAIT_READY = "WaitReady"
    MIGRATE_DATA = "MigrateData"
    SWITCH_APP = "SwitchApp"
    VERIFY = "Verify"
    ROUTE = "Route"
    RETIRE = "Retire"


# How long a waiting step may take before the transition is abandoned as Degraded.
STEP_TIMEOUT_SECONDS: dict[Step, float] = {
    Step.WAIT_READY: 600.0,
    Step.MIGRATE_DATA: 1800.0,
    Step.VERIFY: 600.0,
}


def database_tier(phase: int) -> str:
    return "sqlite" if phase == 1 else "postgresql"


def plan_steps(current: int, target: int) -> list[Step]:
    """The ordered steps that carry the app from `current` to `target` (adjacent phases)."""
    steps = [Step.PROVISION, Step.WAIT_READY]
    if target > current and database_tier(current) != database_tier(target):
        steps.append(Step.MIGRATE_DATA)
    steps += [Step.SWITCH_APP, Step.VERIFY, Step.ROUTE, Step.RETIRE]
    return steps


def key_of(obj: Obj) -> Key:
    return (str(obj["apiVersion"]), str(obj["kind"]), str(obj["metadata"]["name"]))


def component_of(obj: Obj) -> str:
    labels: Mapping[str, str] = obj.get("metadata", {}).get("labels") or {}
    return labels.get(LABEL_COMPONENT, "")


def is_app(obj: Obj) -> bool:
    return component_of(obj) in APP_COMPONENTS


def is_stateful(obj: Obj) -> bool:
    """Holds data: never deleted by a move. Every claim counts, also those a StatefulSet
    made from its volumeClaimTemplates."""
    if obj.get("kind") == "PersistentVolumeClaim":
        return True
    annotations: Mapping[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return annotations.get(ANNOTATION_STATEFUL) == "true"


def provision_set(target_objects: Sequence[Obj]) -> list[Obj]:
    """What the Provision step applies: the backing tiers of the target phase."""
    return [o for o in target_objects if not is_app(o)]


def switch_set(target_objects: Sequence[Obj]) -> list[Obj]:
    """What SwitchApp applies: everything but the app's Services, which Route flips only
    once the new workloads are Ready, so traffic never reaches a colour that is not."""
    return [o for o in target_objects if not (is_app(o) and o.get("kind") == "Service")]


def retire_set(live: Iterable[Obj], target_objects: Sequence[Obj]) -> tuple[list[Obj], list[Obj]]:
    """(objects to delete, stateful objects to keep and label retained) after a move."""
    wanted = {key_of(o) for o in target_objects}
    delete: list[Obj] = []
    retain: list[Obj] = []
    for obj in live:
        if key_of(obj) in wanted:
            continue
        (retain if is_stateful(obj) else delete).append(obj)
    return delete, retain


def workload_ready(live: Obj) -> bool:
    """Whether a live object has reached its desired state (non-workloads always have)."""
    kind = live.get("kind")
    spec = live.get("spec") or {}
    status = live.get("status") or {}
    generation = live.get("metadata", {}).get("generation", 0)
    if kind in ("Deployment", "StatefulSet"):
        want = spec.get("replicas", 1)
        observed = status.get("observedGeneration", 0) >= generation
        ready = status.get("readyReplicas", 0) or 0
        updated = status.get("updatedReplicas", 0) or 0
        if kind == "Deployment":
            # As `kubectl rollout status`: no old pods left, and the new ones available
            # (readyReplicas alone also counts old pods still serving).
            old = (status.get("replicas", 0) or 0) - updated
            available = status.get("availableReplicas", 0) or 0
            return bool(observed and updated >= want and old <= 0 and available >= want)
        return bool(observed and ready >= want and updated >= want)
    if kind == "Job":
        return bool((status.get("succeeded") or 0) >= 1)
    if kind == "PersistentVolumeClaim":
        return status.get("phase") == "Bound"
    return True


def job_failed(live: Obj) -> str | None:
    """The failure message of a Job that will not succeed any more, else None."""
    for condition in (live.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason") or "Job failed")
    return None


def not_ready(live_by_key: Mapping[Key, Obj], expected: Sequence[Obj]) -> list[str]:
    """Names of expected objects that are missing or not yet ready, as kind/name."""
    waiting = []
    for obj in expected:
        live = live_by_key.get(key_of(obj))
        if live is None or not workload_ready(live):
            waiting.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return waiting
