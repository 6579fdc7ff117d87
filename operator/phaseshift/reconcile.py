"""One evaluation of one ScalePlan: the shell that observes, asks, acts and records.

The decisions are pure: `policy.decide` whether to move, `transition.advance` what a
phase transition does next, `rollout.advance` what a rollout does next. The Reconciler
observes the cluster through `Kube`, calls them, carries out the effects they return
(through `Applier` and `Desired`), and writes status (through `StatusWriter`) after every
step, so a process killed at any point resumes where it was. A tick that finds nothing
to change writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubernetes.dynamic.exceptions import DynamicApiError

from phaseshift import conditions, policy, rollout, transition
from phaseshift.api import (
    MAX_MESSAGE_CHARS,
    ConditionStatus,
    InvalidSpec,
    ScalePlan,
    ScalePlanStatus,
    parse_plan,
    record_history,
)
from phaseshift.api import Decision as RecordedDecision
from phaseshift.applier import Applier
from phaseshift.desired import Desired
from phaseshift.kube import KubeApi, api_message, keyed, permanent, refused_object
from phaseshift.metrics import OperatorMetrics
from phaseshift.signals import PlanSignals, fetch_canary
from phaseshift.statuswriter import StatusWriter
from phaseshift.transition import Key, Outcome, key_of

log = logging.getLogger(__name__)

CanaryQuery = Callable[[ScalePlan, datetime], rollout.CanaryReading]


class Reconciler:
    def __init__(
        self,
        kube: KubeApi,
        metrics: OperatorMetrics,
        canary_query: CanaryQuery = fetch_canary,
        images: Mapping[str, str] | None = None,
    ) -> None:
        """`images` is the operator's image table (phaseshift.imagemap); None keeps the
        catalog's pinned images."""
        self.kube = kube
        self.metrics = metrics
        self.canary_query = canary_query
        self.desired = Desired(kube, images)
        self.applier = Applier(kube)
        self.statuses = StatusWriter(kube)

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
            self.statuses.invalid(body, e.message, now)
            return None
        plan = self.statuses.fresh(plan)
        status = plan.status.model_copy(deep=True)
        if status.phase is None:
            self._initialize(plan, status)
        elif status.transition is None and decide:
            self.metrics.evaluations.labels(plan.namespace, plan.name).inc()
            self._evaluate(plan, status, signals, now)
        self._advance(plan, status, now)
        self._roll(plan, status, now)
        status.observed_generation = plan.metadata.generation
        self._conditions(plan, status, now)
        self.statuses.write(plan, status)
        return rollout.wait_seconds(plan, status, now)

    # ------------------------------------------------------------------ phases

    def _initialize(self, plan: ScalePlan, status: ScalePlanStatus) -> None:
        phase = max(plan.spec.policy.min_phase, 1)
        status.release = rollout.release_of(plan.spec.app)
        status.data_tier = transition.data_tier(status.data_tier, phase)
        self.applier.apply(plan, self.desired.phase(plan, phase, status))
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
            unavailable = decision.reason is policy.Reason.METRICS_UNAVAILABLE
            kind = "Warning" if unavailable else "Normal"
            self._event(plan, kind, f"Decision{decision.reason}", decision.message)
        status.target_phase = decision.target_phase if decision.moves else status.phase
        if decision.moves and not rollout.busy(status):
            # (A busy rollout is said by the Transitioning condition; the move waits.)
            move, announced = transition.start(
                status.phase, decision.target_phase, now, status.data_tier
            )
            status.transition = move
            self._carry_out(plan, status, (announced,), now)
            # Record the plan before acting on it: a restart must find the transition.
            self.statuses.write(plan, status)

    def _advance(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> None:
        """Run the transition's steps while they finish at once; each finished step is
        recorded before the next one starts."""
        while status.transition is not None:
            started = time.monotonic()
            step = transition.current_step(status.transition)
            outcome = self._step(plan, status, status.transition, now)
            if outcome is not Outcome.DONE:
                return
            self.metrics.step_seconds.labels(str(step)).observe(time.monotonic() - started)
            if status.transition is not None:
                self.statuses.write(plan, status)

    def _step(
        self, plan: ScalePlan, status: ScalePlanStatus, move: transition.Transition, now: datetime
    ) -> Outcome:
        """Observe, advance, carry out the effects; a write the API server refuses fails
        the transition, one it could not take now is retried by the next tick."""
        try:
            advanced = transition.advance(move, self._observe_step(plan, status, move), now)
            self._carry_out(plan, status, advanced.effects, now)
        except DynamicApiError as e:
            if not permanent(e):
                raise
            advanced = transition.refused(move, api_message(e))
            self._carry_out(plan, status, advanced.effects, now)
        status.transition = advanced.transition
        return advanced.outcome

    def _observe_step(
        self, plan: ScalePlan, status: ScalePlanStatus, move: transition.Transition
    ) -> transition.Observed:
        spec = transition.STEPS[transition.current_step(move)]
        return transition.Observed(
            target=self.desired.phase(plan, move.to, status),
            live=self._live(plan) if spec.reads_live else {},
            job=self.desired.migration_job(plan, status) if spec.runs_job else None,
        )

    def _carry_out(
        self,
        plan: ScalePlan,
        status: ScalePlanStatus,
        effects: Sequence[transition.Effect],
        now: datetime,
    ) -> None:
        ns = plan.namespace
        for effect in effects:
            match effect:
                case transition.Apply(objects):
                    self.applier.apply(plan, objects, force=True)
                case transition.ApplyPhase(phase):
                    self.applier.apply(plan, self.desired.phase(plan, phase, status), force=True)
                case transition.Delete(obj):
                    self.kube.delete(obj, ns)
                case transition.Retain(obj, patch):
                    self.kube.patch(obj, ns, patch)
                case transition.Thaw(attempt):
                    thaw = self.desired.thaw_job(plan, status, attempt)
                    self.applier.apply(plan, [thaw], force=True)
                case transition.Emit(type_, reason, message):
                    self._event(plan, type_, reason, message)
                case transition.SetCondition(type_, value, reason, message):
                    self._set(status, type_, value, reason, message, now, plan)
                case transition.Settle(phase, entry):
                    if entry is not None:
                        status.history = record_history(status.history, entry)
                    status.phase = status.target_phase = phase
                    status.data_tier = transition.data_tier(status.data_tier, phase)
                    self.applier.forget(plan)

    # ------------------------------------------------------------------ rollouts

    def _roll(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> None:
        """Keep the steady phase applied, and move a rollout of spec.app along."""
        if status.phase is None:
            return
        self._take(plan, status, rollout.opening(plan, status, now))
        if status.transition is None and not rollout.busy(status) and rollout.pending(plan, status):
            self._take(plan, status, rollout.start(plan, status, now))
            self.statuses.write(plan, status)  # a restart must find the rollout
        # Acted on: a spec.app seen now is pending no more (see rollout.pending).
        status.app_revision = rollout.revision_of(plan.spec.app)
        if status.transition is not None:
            return
        self._apply_steady(plan, status, now)
        if rollout.busy(status):
            observed = self._observe(plan, status, now)
            rollout.drive(plan, status, observed, now, lambda p: self._move(plan, status, p, now))

    def _move(
        self, plan: ScalePlan, status: ScalePlanStatus, progress: rollout.Progress, now: datetime
    ) -> ScalePlanStatus:
        """Take a step of the rollout; one that changes what runs is recorded before it is
        applied, so a restart does not undo it (a switched Service, say)."""
        before = rollout.tracks(plan, status)
        self._take(plan, status, progress)
        if rollout.tracks(plan, status) != before:
            self.statuses.write(plan, status)
            self._apply_steady(plan, status, now)
        return status

    def _desired(
        self, plan: ScalePlan, status: ScalePlanStatus
    ) -> tuple[list[dict[str, Any]], set[Key]]:
        """The current phase as it should run now, and the keys of the objects the rollout
        in progress changes compared with the released app alone."""
        assert status.phase is not None
        current = self.desired.phase(plan, status.phase, status)
        if not rollout.busy(status):
            return current, set()
        steady = keyed(
            self.desired.phase(plan, status.phase, status.model_copy(update={"rollout": None}))
        )
        return current, {key_of(o) for o in current if steady.get(key_of(o)) != o}

    def _apply_steady(self, plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> None:
        """Apply the phase as it should run now; a new release the API server refuses
        (an invalid template, a quota) is rolled back instead of retried forever."""
        assert status.phase is not None
        current, changed = self._desired(plan, status)
        try:
            self.applier.apply(plan, current)
        except DynamicApiError as e:
            refused = refused_object(e)
            blamed = refused is None or refused in {(kind, name) for _, kind, name in changed}
            if not rollout.rolls_back_refusal(status, permanent=permanent(e), blamed=blamed):
                raise
            why = f"the API server refused the new release: {api_message(e)}"
            self._take(plan, status, rollout.roll_back(status, now, why))
            self.statuses.write(plan, status)
            self.applier.apply(plan, self.desired.phase(plan, status.phase, status), force=True)

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

    # ------------------------------------------------------------------ helpers

    def _live(self, plan: ScalePlan) -> dict[Key, Mapping[str, Any]]:
        return keyed(self.kube.list_managed(plan.namespace, plan.name))

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

    def _event(self, plan: ScalePlan, type_: str, reason: str, message: str) -> None:
        try:
            self.kube.event(plan.model_dump(by_alias=True, mode="json"), type_, reason, message)
        except Exception as e:  # an Event is worth less than the work it reports
            log.warning(
                "could not post Event %s for %s/%s: %s", reason, plan.namespace, plan.name, e
            )
