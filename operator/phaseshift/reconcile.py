"""One evaluation of one ScalePlan: decide, move through transition steps, write status.

This is the shell around the pure modules: it reads the world through `Kube`, asks
`policy.decide` and `transition` what to do, applies `render` output, and records every
step in status before going on, so a process killed at any point resumes where it was.
A tick that finds nothing to change writes nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.dynamic.exceptions import DynamicApiError

from phaseshift import conditions, policy, rollout, transition
from phaseshift.api import (
    LABEL_COMPONENT,
    MAX_MESSAGE_CHARS,
    ConditionStatus,
    ConditionType,
    HistoryEntry,
    InvalidSpec,
    ScalePlan,
    ScalePlanStatus,
    Transition,
    parse_plan,
    record_history,
)
from phaseshift.api import Decision as RecordedDecision
from phaseshift.kube import (
    Kube,
    api_message,
    keyed,
    merge_patch,
    permanent,
    refused_object,
)
from phaseshift.metrics import OperatorMetrics
from phaseshift.render import RenderContext, render_migration_job, render_phase
from phaseshift.render.credentials import PASSWORD_KEY
from phaseshift.render.credentials import secret_name as credentials_secret_name
from phaseshift.render.scope import LABEL_TRACK, Scope
from phaseshift.signals import PlanSignals, fetch_canary
from phaseshift.transition import Key, Step, key_of

log = logging.getLogger(__name__)

# Even when nothing changed, re-check the live objects this often to repair drift.
RESYNC_SECONDS = 300.0


@dataclass
class _Written:
    """The last status this process wrote for a plan, and the resourceVersions it
    replaced: a body carrying one of those predates the write."""

    resource_version: str
    status: ScalePlanStatus
    superseded: list[str]


@dataclass
class _Applied:
    fingerprint: str
    at: float


CanaryQuery = Callable[[ScalePlan, datetime], rollout.CanaryReading]


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        metrics: OperatorMetrics,
        canary_query: CanaryQuery = fetch_canary,
        images: Mapping[str, str] | None = None,
    ) -> None:
        """`images` is the operator's image table (phaseshift.imagemap); None keeps the
        catalog's pinned images."""
        self.kube = kube
        self.metrics = metrics
        self.canary_query = canary_query
        self.images = dict(images) if images is not None else None
        self._applied: dict[str, _Applied] = {}
        self._written: dict[str, _Written] = {}
        self._passwords: dict[str, str] = {}

    # ------------------------------------------------------------------ entry point

    def tick(
        self,
        body: Mapping[str, Any],
        signals: PlanSignals | None,
        now: datetime,
        *,
        decide: bool = True,
    ) -> float | None:
        """One pass over the plan. `decide` is False on the quick ticks between two
        evaluations, which only move a transition or a rollout along. Returns
        `rollout.wait_seconds`: None when nothing is under way, else when to look again."""
        try:
            plan = parse_plan(body)
        except InvalidSpec as e:
            self._invalid(body, e.message, now)
            return None
        plan = self._fresh(plan)
        status = plan.status.model_copy(deep=True)
        if status.phase is None:
            self._initialize(plan, status, now)
        elif status.transition is None and decide:
            self.metrics.evaluations.labels(plan.namespace, plan.name).inc()
            self._evaluate(plan, status, signals, now)
        if status.transition is not None:
            self._advance(plan, status, now)
        self._roll(plan, status, now)
        status.observed_generation = plan.metadata.generation
        self._conditions(plan, status, now)
        self._write_status(plan, status)
        return rollout.wait_seconds(plan, status, now)

    # ------------------------------------------------------------------ phases

    def _initialize(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> None:
        phase = max(plan.spec.policy.min_phase, 1)
        status.release = rollout.release_of(plan.spec.app)
        self._apply_all(plan, self._render(plan, phase, status))
        status.phase = status.target_phase = phase
        self._event(plan, "Normal", "Initialized", f"applied phase {phase}")

    def _evaluate(
        self, plan: ScalePlan, status: ScalePlanStatus, signals: PlanSignals | None, now: datetime
    ) -> None:
        assert status.phase is not None
        decision = policy.decide(signals, plan, now)
        self.metrics.decisions.labels(decision.reason).inc()
        if "activeUsers" in decision.evidence:
            status.users = max(int(decision.evidence["activeUsers"]), 0)
        previous = status.last_decision
        if previous is None or (previous.target, previous.reason) != (
            decision.target_phase,
            decision.reason,
        ):
            status.last_decision = RecordedDecision(
                at=now,
                target=decision.target_phase,
                reason=decision.reason,
                message=decision.message[:MAX_MESSAGE_CHARS],
                signals={k: v for k, v in decision.evidence.items() if v == v},  # drop NaN
            )
            kind = "Warning" if decision.reason is policy.Reason.METRICS_UNAVAILABLE else "Normal"
            self._event(plan, kind, f"Decision{decision.reason}", decision.message)
        if decision.moves and rollout.busy(status):
            # Said by the Transitioning condition; the move starts once the rollout ends.
            status.target_phase = decision.target_phase
            return
        if decision.moves:
            steps = transition.plan_steps(status.phase, decision.target_phase)
            status.transition = Transition(
                from_=status.phase,
                to=decision.target_phase,
                step=0,
                steps=[str(s) for s in steps],
                started_at=now,
                step_started_at=now,
            )
            status.target_phase = decision.target_phase
            self._event(
                plan,
                "Normal",
                "TransitionStarted",
                f"phase {status.phase} -> {decision.target_phase}: {' -> '.join(steps)}",
            )
            # Record the plan before acting on it: a restart must find the transition.
            self._write_status(plan, status)
            return
        status.target_phase = status.phase

    # ------------------------------------------------------------------ rollouts

    def _roll(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> None:
        """Keep the steady phase applied, and move a rollout of spec.app along."""
        if status.phase is None:
            return
        if status.release is None:
            # A plan from before releases were recorded: what runs is spec.app.
            status.release = rollout.release_of(plan.spec.app)
        # Only phase 2 has colours; leaving it retires both, and coming back starts blue.
        status.live_colour = (status.live_colour or "blue") if status.phase == 2 else None
        if status.transition is not None:
            if rollout.pending(plan, status):
                waiting = rollout.wait_for_transition(plan, status, now)
                if waiting != status.rollout:
                    self._event(
                        plan, "Normal", "RolloutWaiting", f"{waiting.image} {waiting.message}"
                    )
                status.rollout = waiting
            status.app_revision = rollout.revision_of(plan.spec.app)
            return
        if rollout.stale_wait(plan, status):
            status.rollout = None
        if not rollout.busy(status) and rollout.pending(plan, status):
            self._take(plan, status, rollout.start(plan, status, now))
            self._write_status(plan, status)  # a restart must find the rollout
        status.app_revision = rollout.revision_of(plan.spec.app)
        self._apply_steady(plan, status, now)
        if not rollout.busy(status):
            return
        observed = self._observe(plan, status, now)
        self._move(plan, status, rollout.advance(plan, status, observed, now), now)
        if rollout.switching(status):
            # Applied just now: the switch is done (and with no grace, so is the rollout).
            self._move(plan, status, rollout.switched(plan, status, now), now)

    def _move(
        self, plan: ScalePlan, status: ScalePlanStatus, progress: rollout.Progress, now: datetime
    ) -> None:
        """Take a step of the rollout; one that changes what runs is recorded before it is
        applied, so a restart does not undo it (a switched Service, say)."""
        before = rollout.tracks(plan, status)
        self._take(plan, status, progress)
        if rollout.tracks(plan, status) != before:
            self._write_status(plan, status)
            self._apply_steady(plan, status, now)

    def _desired(
        self, plan: ScalePlan, status: ScalePlanStatus
    ) -> tuple[list[dict[str, Any]], set[Key]]:
        """The current phase as it should run now, and the keys of the objects the rollout
        in progress changes compared with the released app alone."""
        assert status.phase is not None
        current = self._render(plan, status.phase, status)
        if not rollout.busy(status):
            return current, set()
        steady = keyed(
            self._render(plan, status.phase, status.model_copy(update={"rollout": None}))
        )
        return current, {key_of(o) for o in current if steady.get(key_of(o)) != o}

    def _apply_steady(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> None:
        """Apply the phase as it should run now; a new release the API server refuses
        (an invalid template, a quota) is rolled back instead of retried forever."""
        assert status.phase is not None
        current, changed = self._desired(plan, status)
        try:
            self._apply_all(plan, current)
        except DynamicApiError as e:
            ro = status.rollout
            refused = refused_object(e)
            blamed = refused is None or refused in {(kind, name) for _, kind, name in changed}
            if not (permanent(e) and blamed and ro and rollout.busy(status)):
                raise
            if ro.step in (rollout.RolloutStep.SWITCH, rollout.RolloutStep.GRACE):
                raise  # the new release is Ready already; it is not what failed
            why = f"the API server refused the new release: {api_message(e)}"
            self._take(plan, status, rollout.roll_back(status, now, why))
            self._write_status(plan, status)
            self._apply_all(plan, self._render(plan, status.phase, status), force=True)

    def _observe(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> rollout.Observed:
        """The Deployments the rollout changed that are not rolled out yet, and the canary's
        metrics when a check is due. Other workloads (an HPA scaling the stable track,
        a worker restarting) are not the release's business."""
        current, changed = self._desired(plan, status)
        watched = [o for o in current if o["kind"] == "Deployment" and key_of(o) in changed]
        live = keyed(self.kube.list_managed(plan.namespace, plan.name, [("apps/v1", "Deployment")]))
        not_ready = transition.not_ready(live, watched)
        reading = None
        if not not_ready and rollout.check_due(plan, status, now):
            reading = self.canary_query(plan, now)
        return rollout.Observed(not_ready=not_ready, reading=reading)

    def _take(self, plan: ScalePlan, status: ScalePlanStatus, progress: rollout.Progress) -> None:
        status.rollout = progress.rollout
        status.release = progress.release
        status.live_colour = progress.live_colour
        for type_, reason, message in progress.events:
            self._event(plan, type_, reason, message)

    def _advance(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> None:
        move = status.transition
        assert move is not None
        while move is not None and move.current_step is not None:
            step = Step(move.current_step)
            started = time.monotonic()
            try:
                outcome, message = self._run_step(plan, status, move, step)
            except DynamicApiError as e:
                if not permanent(e):
                    raise  # the API server is busy or away: the next tick retries
                outcome, message = "failed", f"{step}: the API server refused it: {api_message(e)}"
            if outcome == "waiting":
                since = (now - (move.step_started_at or move.started_at)).total_seconds()
                if since <= transition.STEP_TIMEOUT_SECONDS.get(step, 600.0):
                    self._set(status, ConditionType.TRANSITIONING, "True", step, message, now, plan)
                    return
                outcome, message = "failed", f"{step} timed out after {since:.0f}s: {message}"
            if outcome == "failed":
                self._abort(plan, status, move, step, message, now)
                return
            self.metrics.step_seconds.labels(str(step)).observe(time.monotonic() - started)
            self._event(plan, "Normal", f"Step{step}", message)
            move = move.model_copy(update={"step": move.step + 1, "step_started_at": now})
            status.transition = move
            if move.current_step is not None:
                self._write_status(plan, status)
        assert move is not None
        status.history = record_history(
            status.history,
            HistoryEntry(
                from_=move.from_,
                to=move.to,
                at=now,
                reason="Promoted" if move.to > move.from_ else "Demoted",
                duration_seconds=max((now - move.started_at).total_seconds(), 0.0),
            ),
        )
        status.phase = status.target_phase = move.to
        status.transition = None
        self._applied.pop(self._plan_id(plan), None)
        self._set(status, ConditionType.DEGRADED, "False", "TransitionSucceeded", "", now, plan)
        self._event(plan, "Normal", "TransitionComplete", f"now in phase {move.to}")

    def _run_step(
        self, plan: ScalePlan, status: ScalePlanStatus, move: Transition, step: Step
    ) -> tuple[str, str]:
        target = self._render(plan, move.to, status)
        ns = plan.namespace
        if step is Step.PROVISION:
            backing = transition.provision_set(target)
            written = self._apply_all(plan, backing, force=True)
            return "done", f"applied {written} of {len(backing)} backing objects of phase {move.to}"
        if step is Step.WAIT_READY:
            waiting = transition.not_ready(self._live(plan), transition.provision_set(target))
            if waiting:
                return "waiting", f"waiting for {', '.join(waiting[:5])}"
            return "done", f"the backing tiers of phase {move.to} are Ready"
        if step is Step.MIGRATE_DATA:
            job = render_migration_job(
                *rollout.render_inputs(plan, status, self._password(plan), images=self.images)
            )
            self.kube.apply(job, ns)
            live = self.kube.get(job["apiVersion"], job["kind"], ns, job["metadata"]["name"])
            if live is not None and (failure := transition.job_failed(live)):
                return "failed", f"data migration Job {job['metadata']['name']} failed: {failure}"
            if live is None or not transition.workload_ready(live):
                return "waiting", f"data migration Job {job['metadata']['name']} is running"
            return "done", "data migrated and verified (row counts and checksums)"
        if step is Step.SWITCH_APP:
            written = self._apply_all(plan, transition.switch_set(target), force=True)
            return "done", f"switched the app to phase {move.to} ({written} objects changed)"
        if step is Step.VERIFY:
            waiting = transition.not_ready(self._live(plan), transition.switch_set(target))
            if waiting:
                return "waiting", f"waiting for {', '.join(waiting[:5])}"
            return "done", f"every workload of phase {move.to} is Ready"
        if step is Step.ROUTE:
            written = self._apply_all(plan, target, force=True)
            return "done", f"routed traffic to phase {move.to} ({written} objects changed)"
        delete, retain = transition.retire_set(self._live(plan).values(), target)
        for obj in delete:
            self.kube.delete(obj, ns)
        for obj in retain:
            self.kube.mark_retained(obj, ns)
        names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in retain) or "nothing"
        return "done", f"removed {len(delete)} objects; retained {names}"

    def _abort(
        self,
        plan: ScalePlan,
        status: ScalePlanStatus,
        move: Transition,
        step: Step,
        message: str,
        now: datetime,
    ) -> None:
        switched = move.steps.index(str(Step.SWITCH_APP)) < move.step
        if switched:
            # The app already points at the new phase: send it back to the last good one.
            self._apply_all(plan, self._render(plan, move.from_, status), force=True)
        status.transition = None
        status.target_phase = status.phase
        self._set(status, ConditionType.DEGRADED, "True", "StepFailed", message, now, plan)
        self._event(plan, "Warning", "TransitionFailed", message)

    # ------------------------------------------------------------------ helpers

    def _password(self, plan: ScalePlan) -> str:
        key = self._plan_id(plan)
        password = self._passwords.get(key)
        if password is None:
            name = credentials_secret_name(Scope(plan, 1, RenderContext(db_password="")))
            password = self.kube.read_secret_value(plan.namespace, name, PASSWORD_KEY)
            password = password or secrets.token_urlsafe(24)
            self._passwords[key] = password
        return password

    def _render(self, plan: ScalePlan, phase: int, status: ScalePlanStatus) -> list[dict[str, Any]]:
        """The phase as it should run now: the released app on the stable track, and
        whatever the rollout in progress runs beside it."""
        replicas = self._stable_replicas(plan) if phase == 4 and rollout.busy(status) else {}
        stable, ctx = rollout.render_inputs(
            plan, status, self._password(plan), replicas, images=self.images
        )
        return render_phase(stable, phase, ctx)

    def _stable_replicas(self, plan: ScalePlan) -> dict[str, int]:
        """Service -> live replicas of its stable Deployment: canaries are sized to it."""
        replicas = {}
        for live in self.kube.list_managed(plan.namespace, plan.name, [("apps/v1", "Deployment")]):
            labels = live["metadata"].get("labels") or {}
            template = (live["spec"].get("template") or {}).get("metadata") or {}
            if (template.get("labels") or {}).get(LABEL_TRACK) == "stable":
                replicas[labels.get(LABEL_COMPONENT, "")] = int(live["spec"].get("replicas") or 0)
        return replicas

    def _live(self, plan: ScalePlan) -> dict[tuple[str, str, str], Mapping[str, Any]]:
        return keyed(self.kube.list_managed(plan.namespace, plan.name))

    def _apply_all(
        self, plan: ScalePlan, objects: Sequence[Mapping[str, Any]], *, force: bool = False
    ) -> int:
        key = self._plan_id(plan)
        fingerprint = str(hash(repr(objects)))
        memo = self._applied.get(key)
        fresh = memo and memo.fingerprint == fingerprint
        if not force and memo and fresh and time.monotonic() - memo.at < RESYNC_SECONDS:
            return 0
        written = sum(self.kube.apply(obj, plan.namespace) for obj in objects)
        if not force:
            self._applied[key] = _Applied(fingerprint, time.monotonic())
        return written

    @staticmethod
    def _plan_id(plan: ScalePlan) -> str:
        return plan.metadata.uid or f"{plan.namespace}/{plan.name}"

    def _conditions(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> None:
        for type_, verdict in conditions.derived(status).items():
            self._set(status, type_, *verdict, now, plan)
        self.metrics.phase.labels(plan.namespace, plan.name).set(status.phase or 0)

    @staticmethod
    def _set(
        status: ScalePlanStatus,
        type_: str,
        value: ConditionStatus,
        reason: str,
        message: str,
        now: datetime,
        plan: ScalePlan,
    ) -> None:
        status.conditions = conditions.with_condition(
            status.conditions, type_, (value, reason, message), now, plan.metadata.generation
        )

    def _write_status(self, plan: ScalePlan, status: ScalePlanStatus) -> None:
        new = status.to_json()
        old = plan.status.to_json()
        if new == old:
            return
        before = plan.metadata.resource_version
        after = self.kube.patch_status(plan.namespace, plan.name, merge_patch(old, new))
        plan.status = status.model_copy(deep=True)
        plan.metadata.resource_version = after
        written = self._written.get(self._plan_id(plan))
        superseded = written.superseded if written else []
        self._written[self._plan_id(plan)] = _Written(
            after, plan.status, [*superseded, before][-8:]
        )

    def _fresh(self, plan: ScalePlan) -> ScalePlan:
        """`plan`, with the status this process last wrote when the body handed in is
        older than that write: kopf's copy follows the watch, which may lag a tick."""
        written = self._written.get(self._plan_id(plan))
        if written is None or plan.metadata.resource_version not in written.superseded:
            return plan
        metadata = plan.metadata.model_copy(update={"resource_version": written.resource_version})
        return plan.model_copy(update={"metadata": metadata, "status": written.status})

    def _event(self, plan: ScalePlan, type_: str, reason: str, message: str) -> None:
        try:
            self.kube.event(plan.model_dump(by_alias=True, mode="json"), type_, reason, message)
        except Exception as e:  # an Event is worth less than the work it reports
            log.warning(
                "could not post Event %s for %s/%s: %s", reason, plan.namespace, plan.name, e
            )

    def _invalid(self, body: Mapping[str, Any], message: str, now: datetime) -> None:
        meta = body.get("metadata", {})
        conditions = (body.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if (
            ready
            and ready.get("reason") == "InvalidSpec"
            and ready.get("message") == message[:MAX_MESSAGE_CHARS]
        ):
            return
        condition = {
            "type": "Ready",
            "status": "False",
            "reason": "InvalidSpec",
            "message": message[:MAX_MESSAGE_CHARS],
            "lastTransitionTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "observedGeneration": meta.get("generation", 0),
        }
        others = [c for c in conditions if c.get("type") != "Ready"]
        self.kube.patch_status(
            meta["namespace"], meta["name"], {"conditions": [*others, condition]}
        )
        try:
            self.kube.event(body, "Warning", "InvalidSpec", message)
        except Exception as e:
            log.warning("could not post Event InvalidSpec: %s", e)
