"""Phase transitions as a pure state machine: the steps, what each one does, and when a
transition fails.

A transition is a list of steps recorded in `status.transition`; `step` indexes the one
under way. The shell (reconcile.py) observes the cluster, calls `advance` and carries out
the effects it returns, then records the new state in status before the next step, so a
restart resumes exactly where it was. Every step is idempotent: applying what is already
applied, waiting for what is already Ready, or retiring what is already gone changes
nothing.

  step         does                                              waits for, fails on
  Provision    apply the target phase's backing tiers            -
  WaitReady    -                                                 the backing tiers Ready
  SwitchApp    apply the app's workloads, not its Services       -
  Verify       -                                                 the app's workloads Ready
  MigrateData  apply the data migration Job (1 -> 2 only)        the Job done / Job failed
  Route        apply everything: the Services select the app     -
  Retire       delete what the phase no longer has; label the    -
               stateful objects retained

MigrateData comes right before Route: the Job freezes the old app's writes before its
final pass (writes answer 503 with Retry-After, reads go on), so the new app is Ready
first and writes are refused only for the final pass and the switch of the Services.

A waiting step past its timeout, a failed Job, or a write the API server refuses aborts
the transition: Degraded=True, and an app already switched goes back to the last phase,
with its writes opened again (Thaw) when the migration may have frozen them. Once the
Services route to a new data tier there is no going back: the old tier lacks the writes
made since, so the plan stays in the target phase, Degraded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from hashlib import sha256
from typing import Any

from phaseshift.api import (
    LABEL_COMPONENT,
    LABEL_RETAIN,
    ConditionStatus,
    ConditionType,
    DataTier,
    HistoryEntry,
    Transition,
)
from phaseshift.catalog import PHASES
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


class Outcome(StrEnum):
    """What became of the step under way at one `advance`."""

    DONE = "Done"
    WAITING = "Waiting"
    FAILED = "Failed"


def data_tier(recorded: DataTier | None, phase: int) -> DataTier:
    """Where the data lives while `phase` runs: in SQLite until the first phase that runs
    PostgreSQL, then in PostgreSQL for good (`recorded` is status.dataTier, None for a
    plan from before it was recorded)."""
    if recorded == "PostgreSQL" or PHASES[phase].database.postgres:
        return "PostgreSQL"
    return "SQLite"


def plan_steps(current: int, target: int, tier: DataTier | None = None) -> list[Step]:
    """The ordered steps that carry the app from `current` to `target` (adjacent phases),
    its data living in `tier` (status.dataTier). Only the move that first takes the app
    onto PostgreSQL migrates data; a move down keeps it where it lives."""
    steps = [Step.PROVISION, Step.WAIT_READY, Step.SWITCH_APP, Step.VERIFY]
    if data_tier(tier, current) == "SQLite" and data_tier(tier, target) == "PostgreSQL":
        steps.append(Step.MIGRATE_DATA)
    steps += [Step.ROUTE, Step.RETIRE]
    return steps


def attempt(move: Transition) -> str:
    """A short name for this run of a transition: its Jobs carry it, so a Job left by an
    abandoned earlier run is never taken for this one's."""
    return sha256(move.started_at.isoformat().encode()).hexdigest()[:8]


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


def switch_set(target_objects: Sequence[Obj], live: Mapping[Key, Obj]) -> list[Obj]:
    """What SwitchApp applies: everything but the app's Services that exist already,
    which Route flips only once the new workloads are Ready, so traffic never reaches a
    colour that is not. A Service the phase adds (phase 4's user-service, data-service
    and gateway) carries no traffic yet, and the new workloads need it to turn Ready:
    the gateway is Ready only once it reaches the services behind it."""
    return [
        o
        for o in target_objects
        if not (is_app(o) and o.get("kind") == "Service" and key_of(o) in live)
    ]


def retain_patch(live: Obj) -> dict[str, Any] | None:
    """The merge patch that keeps a stateful object the target phase no longer runs:
    labelled retained, and a StatefulSet scaled to zero with its claims kept, so a
    retained tier costs nothing until a promotion applies it with its replicas again and
    it starts on its old volumes. None when the object is so already."""
    patch: dict[str, Any] = {}
    labels: Mapping[str, str] = live.get("metadata", {}).get("labels") or {}
    if labels.get(LABEL_RETAIN) != "true":
        patch["metadata"] = {"labels": {LABEL_RETAIN: "true"}}
    if live.get("kind") == "StatefulSet" and (live.get("spec") or {}).get("replicas", 1) != 0:
        patch["spec"] = {"replicas": 0}
    return patch or None


def retire_set(live: Iterable[Obj], target_objects: Sequence[Obj]) -> tuple[list[Obj], list[Obj]]:
    """(objects to delete, stateful objects to keep and label retained) after a move.
    Jobs are neither: a migration's Job keeps its log for whoever reads what it did, and
    goes by its own ttlSecondsAfterFinished."""
    wanted = {key_of(o) for o in target_objects}
    delete: list[Obj] = []
    retain: list[Obj] = []
    for obj in live:
        if key_of(obj) in wanted or obj.get("kind") == "Job":
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


def hpa_floors(objects: Iterable[Obj]) -> dict[tuple[str, str], int]:
    """(kind, name) of each workload an HPA among `objects` scales -> its minReplicas."""
    floors: dict[tuple[str, str], int] = {}
    for obj in objects:
        if obj.get("kind") != "HorizontalPodAutoscaler":
            continue
        spec = obj.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        floors[(str(target.get("kind")), str(target.get("name")))] = int(spec.get("minReplicas", 1))
    return floors


def not_ready(live_by_key: Mapping[Key, Obj], expected: Sequence[Obj]) -> list[str]:
    """Names of expected objects that are missing or not yet ready, as kind/name. A
    workload an expected HPA scales is ready only once it runs the HPA's minReplicas: it is
    created with one replica, and the HPA raises it to its floor at its first sync, up
    to a sync period (15s) later."""
    floors = hpa_floors(expected)
    waiting = []
    for obj in expected:
        live = live_by_key.get(key_of(obj))
        name = (str(obj["kind"]), str(obj["metadata"]["name"]))
        floor = floors.get(name, 0)
        if live is None or not workload_ready(live) or _replicas(live) < floor:
            waiting.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return waiting


def _replicas(live: Obj) -> int:
    return int((live.get("spec") or {}).get("replicas", 1))


# ------------------------------------------------------------------ the state machine


@dataclass(frozen=True)
class Observed:
    """What the shell saw for the step under way.

    target: the target phase, rendered as it should run now.
    live: the plan's live objects, when the step `reads_live` (else empty).
    job: the data migration Job as rendered, for the step that `runs_job`.
    """

    target: Sequence[Obj]
    live: Mapping[Key, Obj] = field(default_factory=dict)
    job: Obj | None = None


# The effects `advance` asks of the shell, carried out in order.


@dataclass(frozen=True)
class Apply:
    """Server-side apply these objects now."""

    objects: tuple[Obj, ...]


@dataclass(frozen=True)
class ApplyPhase:
    """Apply this phase whole, as it should run now: an aborted transition's way back."""

    phase: int


@dataclass(frozen=True)
class Delete:
    obj: Obj


@dataclass(frozen=True)
class Retain:
    """Merge-patch a stateful object retained (see `retain_patch`): it outlives the phase
    that made it."""

    obj: Obj
    patch: Mapping[str, Any]


@dataclass(frozen=True)
class Thaw:
    """Open phase 1's SQLite database to writes again (the Job of this attempt): the
    migration may have frozen them before the transition was abandoned."""

    attempt: str


@dataclass(frozen=True)
class Emit:
    """Post an Event on the plan."""

    type_: str
    reason: str
    message: str


@dataclass(frozen=True)
class SetCondition:
    type_: ConditionType
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Settle:
    """The transition is over: `phase` runs now and is the target; `entry`, when the
    plan moved, goes into the history."""

    phase: int
    entry: HistoryEntry | None = None


Effect = Apply | ApplyPhase | Delete | Retain | Thaw | Emit | SetCondition | Settle


@dataclass(frozen=True)
class Advanced:
    """One `advance`: the transition after it (None once it ended), what became of the
    step, and the effects to carry out."""

    transition: Transition | None
    outcome: Outcome
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    message: str
    effects: tuple[Effect, ...] = ()


def _provision(move: Transition, seen: Observed) -> _Result:
    backing = provision_set(seen.target)
    message = f"applied the {len(backing)} backing objects of phase {move.to}"
    return _Result(Outcome.DONE, message, (Apply(tuple(backing)),))


def _until_ready(seen: Observed, expected: Sequence[Obj], ready: str) -> _Result:
    waiting = not_ready(seen.live, expected)
    if waiting:
        return _Result(Outcome.WAITING, f"waiting for {', '.join(waiting[:5])}")
    return _Result(Outcome.DONE, ready)


def _wait_ready(move: Transition, seen: Observed) -> _Result:
    backing = provision_set(seen.target)
    return _until_ready(seen, backing, f"the backing tiers of phase {move.to} are Ready")


def _migrate_data(move: Transition, seen: Observed) -> _Result:
    job = seen.job
    assert job is not None, "MigrateData runs a Job"
    name = job["metadata"]["name"]
    live = seen.live.get(key_of(job))
    if live is not None and (failure := job_failed(live)):
        return _Result(Outcome.FAILED, f"data migration Job {name} failed: {failure}")
    if live is None or not workload_ready(live):
        return _Result(Outcome.WAITING, f"data migration Job {name} is running", (Apply((job,)),))
    return _Result(Outcome.DONE, "data migrated and verified (row counts and checksums)")


def _switch_app(move: Transition, seen: Observed) -> _Result:
    app = switch_set(seen.target, seen.live)
    message = f"switched the app to phase {move.to} ({len(app)} objects applied)"
    return _Result(Outcome.DONE, message, (Apply(tuple(app)),))


def _verify(move: Transition, seen: Observed) -> _Result:
    app = switch_set(seen.target, seen.live)
    return _until_ready(seen, app, f"every workload of phase {move.to} is Ready")


def _route(move: Transition, seen: Observed) -> _Result:
    message = f"routed traffic to phase {move.to} ({len(seen.target)} objects applied)"
    return _Result(Outcome.DONE, message, (Apply(tuple(seen.target)),))


def _retire(move: Transition, seen: Observed) -> _Result:
    delete, retain = retire_set(seen.live.values(), seen.target)
    names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in retain) or "nothing"
    patches = ((o, retain_patch(o)) for o in retain)
    kept = tuple(Retain(o, patch) for o, patch in patches if patch is not None)
    effects: tuple[Effect, ...] = (*map(Delete, delete), *kept)
    return _Result(Outcome.DONE, f"removed {len(delete)} objects; retained {names}", effects)


@dataclass(frozen=True)
class StepSpec:
    """What a step does, what the shell must observe for it, and how long it may wait
    before the transition is abandoned as Degraded."""

    run: Callable[[Transition, Observed], _Result]
    reads_live: bool = False
    runs_job: bool = False
    timeout_seconds: float = 600.0


STEPS: dict[Step, StepSpec] = {
    Step.PROVISION: StepSpec(_provision),
    Step.WAIT_READY: StepSpec(_wait_ready, reads_live=True, timeout_seconds=600.0),
    Step.MIGRATE_DATA: StepSpec(
        _migrate_data, reads_live=True, runs_job=True, timeout_seconds=1800.0
    ),
    Step.SWITCH_APP: StepSpec(_switch_app, reads_live=True),
    Step.VERIFY: StepSpec(_verify, reads_live=True, timeout_seconds=600.0),
    Step.ROUTE: StepSpec(_route),
    Step.RETIRE: StepSpec(_retire, reads_live=True),
}


def start(
    current: int, target: int, now: datetime, tier: DataTier | None = None
) -> tuple[Transition, Emit]:
    """A transition from `current` to `target` with the data in `tier`, and the Event
    that announces it."""
    steps = plan_steps(current, target, tier)
    move = Transition(
        from_=current,
        to=target,
        step=0,
        steps=[str(s) for s in steps],
        started_at=now,
        step_started_at=now,
    )
    announced = Emit(
        "Normal", "TransitionStarted", f"phase {current} -> {target}: {' -> '.join(steps)}"
    )
    return move, announced


def current_step(move: Transition) -> Step:
    """The step under way (a transition that has steps left has one)."""
    assert move.current_step is not None
    return Step(move.current_step)


def advance(move: Transition, observed: Observed, now: datetime) -> Advanced:
    """Run the step under way once: wait, move on to the next step, finish, or fail."""
    step = current_step(move)
    spec = STEPS[step]
    result = spec.run(move, observed)
    if result.outcome is Outcome.WAITING:
        since = (now - (move.step_started_at or move.started_at)).total_seconds()
        if since > spec.timeout_seconds:
            return fail(move, f"{step} timed out after {since:.0f}s: {result.message}")
        waiting = SetCondition(ConditionType.TRANSITIONING, "True", step, result.message)
        return Advanced(move, Outcome.WAITING, (*result.effects, waiting))
    if result.outcome is Outcome.FAILED:
        return fail(move, result.message)
    done = (*result.effects, Emit("Normal", f"Step{step}", result.message))
    following = move.model_copy(update={"step": move.step + 1, "step_started_at": now})
    if following.current_step is not None:
        return Advanced(following, Outcome.DONE, done)
    entry = HistoryEntry(
        from_=move.from_,
        to=move.to,
        at=now,
        reason="Promoted" if move.to > move.from_ else "Demoted",
        duration_seconds=max((now - move.started_at).total_seconds(), 0.0),
    )
    finished = (
        Settle(move.to, entry),
        SetCondition(ConditionType.DEGRADED, "False", "TransitionSucceeded", ""),
        Emit("Normal", "TransitionComplete", f"now in phase {move.to}"),
    )
    return Advanced(None, Outcome.DONE, (*done, *finished))


def _behind(move: Transition, step: Step) -> bool:
    return str(step) in move.steps and move.steps.index(str(step)) < move.step


def switched(move: Transition) -> bool:
    """The app already points at the target phase (SwitchApp is behind)."""
    return _behind(move, Step.SWITCH_APP)


def fail(move: Transition, message: str) -> Advanced:
    """Abandon the transition: the plan stays in (or goes back to) the phase it left, or,
    once a new data tier serves, stays in the target phase."""
    degraded = (
        SetCondition(ConditionType.DEGRADED, "True", "StepFailed", message),
        Emit("Warning", "TransitionFailed", message),
    )
    moves_data = str(Step.MIGRATE_DATA) in move.steps
    if moves_data and _behind(move, Step.ROUTE):
        return Advanced(None, Outcome.FAILED, (Settle(move.to), *degraded))
    back: tuple[Effect, ...] = (ApplyPhase(move.from_),) if switched(move) else ()
    if moves_data and move.step >= move.steps.index(str(Step.MIGRATE_DATA)):
        back += (Thaw(attempt(move)),)
    return Advanced(None, Outcome.FAILED, (*back, Settle(move.from_), *degraded))


def refused(move: Transition, why: str) -> Advanced:
    """The API server refused a write of the step under way: no retry can fix that."""
    return fail(move, f"{current_step(move)}: the API server refused it: {why}")
