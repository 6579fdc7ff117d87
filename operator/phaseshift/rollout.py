"""Rollouts of a new release (a change of spec.app) with the current phase's strategy. Pure.

The operator renders the *released* app (`status.release`), never spec.app directly: a
rollout is the process that carries the release to a new spec.app, and a rolled-back
release simply stays where it was. Each phase has its strategy (`catalog.Phase.strategy`):

  phase 1  Recreate   Deploy (apply the new template; wait until Ready)
  phase 2  BlueGreen  Deploy (the idle colour, scaled up) -> Switch (the Service, once the
                      idle colour is Ready) -> Grace (the old colour stays scaled) -> old
                      colour to zero
  phase 3  Rolling    Deploy (RollingUpdate, maxUnavailable 0)
  phase 4  Canary     Deploy (the canaries) -> Analyse (a check per interval against
                      Prometheus; the share grows per passed check) -> Promote (the stable
                      track takes the new template)

Every wait for new pods is bounded by spec.rollout.rolling.progressDeadlineSeconds; past
it the rollout is rolled back. The whole state is in `status.rollout`, so a restarted
operator resumes where it was. A phase transition and a rollout never overlap: whichever
comes second waits (see `busy`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from phaseshift.api import (
    MAX_CANARY_WEIGHT,
    App,
    CanaryStatus,
    Colour,
    Release,
    RolloutState,
    RolloutStatus,
    RolloutStrategy,
    ScalePlan,
    ScalePlanStatus,
    other_colour,
)
from phaseshift.catalog import PHASES
from phaseshift.render.context import RenderContext


class RolloutStep(StrEnum):
    """The steps recorded in status.rollout.step (a string there: the API keeps its schema)."""

    DEPLOY = "Deploy"
    SWITCH = "Switch"
    GRACE = "Grace"
    ANALYSE = "Analyse"
    PROMOTE = "Promote"
    DONE = "Done"


def revision_of(app: App) -> str:
    """A short, stable digest of everything in spec.app that shapes the app's pods."""
    canonical = json.dumps(app.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def release_of(app: App) -> Release:
    return Release(revision=revision_of(app), app=app.model_copy(deep=True))


def released_app(plan: ScalePlan, status: ScalePlanStatus) -> App:
    return status.release.app if status.release is not None else plan.spec.app


def stable_plan(plan: ScalePlan, status: ScalePlanStatus) -> ScalePlan:
    """`plan` with spec.app replaced by what the stable track runs now."""
    app = tracks(plan, status).app
    if app == plan.spec.app:
        return plan
    return plan.model_copy(update={"spec": plan.spec.model_copy(update={"app": app})})


def render_inputs(
    plan: ScalePlan,
    status: ScalePlanStatus,
    db_password: str,
    stable_replicas: Mapping[str, int] | None = None,
    images: Mapping[str, str] | None = None,
) -> tuple[ScalePlan, RenderContext]:
    """What to hand `render_phase` so it renders the phase as it should run now;
    `images` is the operator's image table (the catalog's when None)."""
    now = tracks(plan, status)
    ctx = RenderContext(
        db_password=db_password,
        live_colour=now.live_colour,
        next_app=now.next_app,
        canary_weight=now.canary_weight,
        stable_replicas=dict(stable_replicas or {}),
        data_tier=status.data_tier,
    )
    if images is not None:
        ctx = replace(ctx, images=dict(images))
    return stable_plan(plan, status), ctx


def busy(status: ScalePlanStatus) -> bool:
    """A rollout holds the app: a phase transition must wait for it."""
    return status.rollout is not None and status.rollout.state == RolloutState.PROGRESSING


def in_motion(status: ScalePlanStatus) -> bool:
    """A transition or a rollout is waiting for the cluster: worth a quick next look."""
    return status.transition is not None or busy(status)


def pending(plan: ScalePlan, status: ScalePlanStatus) -> bool:
    """spec.app asks for a release that is not running, and that is new since the operator
    last acted on spec.app or waited for a phase transition to end."""
    wanted = revision_of(plan.spec.app)
    if status.release is not None and status.release.revision == wanted:
        return False
    last = status.rollout
    waiting = last is not None and last.state == RolloutState.WAITING and last.revision == wanted
    return waiting or status.app_revision != wanted


# ------------------------------------------------------------------ what to render


@dataclass(frozen=True)
class Tracks:
    """What the renderer runs while a rollout is where it is.

    app: the release on the stable track (phase 1/3's Deployment, phase 2's live colour,
        phase 4's stable Deployments).
    next_app: the release on the second track (phase 2's idle colour, phase 4's canaries),
        scaled up; None scales that track to zero.
    """

    app: App
    next_app: App | None = None
    canary_weight: int = 0
    live_colour: Colour = "blue"


def tracks(plan: ScalePlan, status: ScalePlanStatus) -> Tracks:
    released = released_app(plan, status)
    colour: Colour = status.live_colour or "blue"
    ro = status.rollout
    if ro is None or ro.state != RolloutState.PROGRESSING:
        return Tracks(released, live_colour=colour)
    if ro.strategy in (RolloutStrategy.RECREATE, RolloutStrategy.ROLLING):
        return Tracks(plan.spec.app, live_colour=colour)
    if ro.strategy == RolloutStrategy.BLUE_GREEN:
        if ro.step in (RolloutStep.SWITCH, RolloutStep.GRACE):
            # The old release stays up on the other colour, unless the switch goes back to it.
            previous = ro.previous.app if ro.previous is not None and _forward(status) else None
            return Tracks(released, next_app=previous, live_colour=colour)
        return Tracks(released, next_app=plan.spec.app, live_colour=colour)
    weight = ro.canary.weight_percent if ro.canary is not None else 0
    stable = plan.spec.app if ro.step == RolloutStep.PROMOTE else released
    return Tracks(stable, next_app=plan.spec.app, canary_weight=weight, live_colour=colour)


# ------------------------------------------------------------------ moving on


@dataclass(frozen=True)
class CanaryReading:
    """The canary's metrics at one check; None where Prometheus had no value."""

    error_rate: float | None
    p95_latency_seconds: float | None
    error: str | None = None


@dataclass(frozen=True)
class Observed:
    """What the shell saw this tick.

    not_ready: app Deployments of the current Tracks that are not fully rolled out.
    reading: the canary's metrics, when a check was due (see `check_due`).
    """

    not_ready: Sequence[str] = ()
    reading: CanaryReading | None = None


EventSpec = tuple[str, str, str]
"""type, reason, message"""


@dataclass
class Progress:
    """The status fields a rollout step changes, and the Events that say so."""

    rollout: RolloutStatus | None
    release: Release | None
    live_colour: Colour | None
    events: list[EventSpec] = field(default_factory=list)


def opening(plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> Progress:
    """What a look at the plan records before anything is applied:

    1. the release that runs: spec.app for a plan from before releases were recorded;
    2. the live colour: only phase 2 has colours; leaving it retires both, and coming back
       starts blue;
    3. while a phase transition runs, a release spec.app asks for is recorded as waiting
       for it (with an Event when that record is new);
    4. otherwise, a waiting record for a release spec.app no longer asks for is dropped.
    """
    assert status.phase is not None
    release = status.release or release_of(plan.spec.app)
    colour: Colour | None = (status.live_colour or "blue") if PHASES[status.phase].colours else None
    current = status.model_copy(update={"release": release, "live_colour": colour})
    progress = Progress(status.rollout, release, colour)
    if status.transition is not None:
        if pending(plan, current):
            waiting = wait_for_transition(plan, current, now)
            if waiting != status.rollout:
                message = f"{waiting.image} {waiting.message}"
                progress.events.append(("Normal", "RolloutWaiting", message))
            progress.rollout = waiting
    elif stale_wait(plan, current):
        progress.rollout = None
    return progress


def rolls_back_refusal(status: ScalePlanStatus, *, permanent: bool, blamed: bool) -> bool:
    """Whether the API server's refusal to apply the phase is the new release's to answer
    for, rolled back rather than retried forever: the refusal is permanent (an invalid
    template, a quota), it names an object the rollout changed (or none), and the rollout
    has not switched yet. From Switch on the new release is Ready; it is not what failed."""
    ro = status.rollout
    if not (permanent and blamed and ro is not None and busy(status)):
        return False
    return ro.step not in (RolloutStep.SWITCH, RolloutStep.GRACE)


def start(plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> Progress:
    """Begin rolling spec.app out with the strategy of the current phase."""
    assert status.phase is not None
    strategy = PHASES[status.phase].strategy
    new = RolloutStatus(
        revision=revision_of(plan.spec.app),
        image=plan.spec.app.image,
        from_revision=status.release.revision if status.release else "",
        strategy=strategy,
        state=RolloutState.PROGRESSING,
        step=RolloutStep.DEPLOY,
        started_at=now,
        step_started_at=now,
        canary=(
            CanaryStatus(weight_percent=_weight(plan, 0))
            if strategy == RolloutStrategy.CANARY
            else None
        ),
        message=_deploy_message(strategy),
    )
    return Progress(
        new,
        status.release,
        status.live_colour,
        [("Normal", "RolloutStarted", f"{strategy} rollout of {new.image} ({new.revision})")],
    )


def stale_wait(plan: ScalePlan, status: ScalePlanStatus) -> bool:
    """A Waiting record for a release spec.app no longer asks for: it never started."""
    last = status.rollout
    return (
        last is not None
        and last.state == RolloutState.WAITING
        and last.revision != revision_of(plan.spec.app)
    )


def wait_for_transition(plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> RolloutStatus:
    """The record of a rollout that must wait until the phase transition has finished."""
    move = status.transition
    assert move is not None
    revision = revision_of(plan.spec.app)
    last = status.rollout
    message = f"waits for the phase transition {move.from_} -> {move.to} to finish"
    if last is not None and last.revision == revision and last.state == RolloutState.WAITING:
        return last
    return RolloutStatus(
        revision=revision,
        image=plan.spec.app.image,
        from_revision=status.release.revision if status.release else "",
        strategy=PHASES[move.to].strategy,
        state=RolloutState.WAITING,
        started_at=now,
        message=message,
    )


def due_at(plan: ScalePlan, status: ScalePlanStatus) -> datetime | None:
    """The next moment the rollout in progress has something to do by the clock alone
    (a canary check, the end of a grace period), so the shell can look exactly then."""
    ro = status.rollout
    if ro is None or ro.state != RolloutState.PROGRESSING:
        return None
    if ro.step == RolloutStep.ANALYSE:
        return _next_check_at(plan, ro)
    if ro.step == RolloutStep.GRACE:
        return (ro.step_started_at or ro.started_at) + timedelta(
            seconds=plan.spec.rollout.blue_green.grace_seconds
        )
    return None


def wait_seconds(plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> float | None:
    """None when neither a transition nor a rollout is under way; else the seconds until
    the rollout's next moment due by the clock, or infinity when there is none (or it has
    passed without being acted on: pods not Ready for a canary check, say): poll then."""
    if not in_motion(status):
        return None
    due = due_at(plan, status)
    return math.inf if due is None or due <= now else (due - now).total_seconds()


def check_due(plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> bool:
    """Whether this tick should read the canary's metrics."""
    due = due_at(plan, status)
    return (
        status.rollout is not None
        and status.rollout.step == RolloutStep.ANALYSE
        and due is not None
        and now >= due
    )


def advance(
    plan: ScalePlan, status: ScalePlanStatus, observed: Observed, now: datetime
) -> Progress:
    """The next state of the rollout in progress, given what the shell observed."""
    ro = status.rollout
    assert ro is not None and ro.state == RolloutState.PROGRESSING
    if ro.step == RolloutStep.SWITCH:
        # Found after a restart: the shell has applied the recorded colour since.
        done = switched(plan, status, now)
        moved_on = done.release is not None and done.release.revision != revision_of(plan.spec.app)
        if moved_on and done.rollout is not None and done.rollout.state == RolloutState.ROLLED_BACK:
            # spec.app moved on while the switch back was pending: roll it out now (a
            # forward switch meets the change in its grace period instead).
            return _then_start(plan, status, done, now)
        return done
    progress = Progress(ro, status.release, status.live_colour)
    wanted = revision_of(plan.spec.app)
    if ro.revision != wanted:
        return _superseded(plan, status, progress, observed, now)
    if ro.step == RolloutStep.GRACE:
        return _grace(plan, status, progress, now)
    if observed.not_ready and ro.step in (RolloutStep.DEPLOY, RolloutStep.PROMOTE):
        return _maybe_deadline(plan, progress, observed, now)
    if ro.step == RolloutStep.DEPLOY:
        return _deployed(plan, status, progress, now)
    if ro.step == RolloutStep.PROMOTE:
        return _succeeded(
            progress, now, f"the stable track runs {ro.image}", release_of(plan.spec.app)
        )
    if observed.not_ready:
        return _maybe_deadline(plan, progress, observed, now)
    if observed.reading is not None:
        return _checked(plan, progress, observed.reading, now)
    return progress


def drive(
    plan: ScalePlan,
    status: ScalePlanStatus,
    observed: Observed,
    now: datetime,
    take: Callable[[Progress], ScalePlanStatus],
) -> Progress:
    """One tick of the rollout in progress, in the order every caller must keep: advance;
    `take` records the step and applies what it changes (returning the status after); a
    switch it so recorded and applied is now done (`switched`); and spec.app has been
    acted on. Returns the tick's progress, with the Events of both steps."""
    progress = advance(plan, status, observed, now)
    status = take(progress)
    if switching(status):
        done = switched(plan, status, now)
        status = take(done)
        progress = Progress(
            done.rollout, done.release, done.live_colour, [*progress.events, *done.events]
        )
    status.app_revision = revision_of(plan.spec.app)
    return progress


def _deployed(
    plan: ScalePlan, status: ScalePlanStatus, progress: Progress, now: datetime
) -> Progress:
    ro = progress.rollout
    assert ro is not None
    if ro.strategy == RolloutStrategy.BLUE_GREEN:
        new = other_colour(status.live_colour)
        progress.live_colour = new
        progress.rollout = _step(ro, RolloutStep.SWITCH, now, f"switching the Service to {new}")
        progress.rollout.previous = status.release
        progress.release = release_of(plan.spec.app)
        return progress
    if ro.strategy == RolloutStrategy.CANARY:
        progress.rollout = _step(
            ro,
            RolloutStep.ANALYSE,
            now,
            f"analysing the canary every {plan.spec.rollout.canary.interval_seconds}s",
        )
        return progress
    return _succeeded(progress, now, f"every pod runs {ro.image}", release_of(plan.spec.app))


def switching(status: ScalePlanStatus) -> bool:
    """The Service is to select status.liveColour: recorded, not yet known to be applied.
    The shell applies it, then calls `switched`."""
    ro = status.rollout
    return ro is not None and ro.state == RolloutState.PROGRESSING and ro.step == RolloutStep.SWITCH


def switched(plan: ScalePlan, status: ScalePlanStatus, now: datetime) -> Progress:
    """The Service now selects status.liveColour: the grace period of the new release
    begins, or a switch back to the previous release ends the rollout."""
    ro = status.rollout
    assert ro is not None and switching(status)
    progress = Progress(ro, status.release, status.live_colour)
    live = status.live_colour or "blue"
    old = other_colour(live)
    if not _forward(status):
        reverted = status.release.revision if status.release else ""
        progress.rollout = _finish(
            ro,
            RolloutState.ROLLED_BACK,
            now,
            f"spec.app went back to {reverted}: switched the Service back to {live}",
        )
        progress.events.append(("Warning", "RolloutRolledBack", progress.rollout.message))
        return progress
    grace = plan.spec.rollout.blue_green.grace_seconds
    progress.events.append(
        (
            "Normal",
            "RolloutSwitched",
            f"the Service now selects {live} ({ro.image}); {old} stays scaled for {grace}s",
        )
    )
    progress.rollout = _step(
        ro, RolloutStep.GRACE, now, f"{live} is live; {old} is kept for {grace}s"
    )
    if grace == 0:
        return _succeeded(progress, now, f"{old} scaled to zero")
    return progress


def _forward(status: ScalePlanStatus) -> bool:
    """The blue-green switch goes to the rollout's release, not back from it."""
    ro = status.rollout
    return ro is not None and status.release is not None and status.release.revision == ro.revision


def _grace(plan: ScalePlan, status: ScalePlanStatus, progress: Progress, now: datetime) -> Progress:
    ends = due_at(plan, status)
    if ends is not None and now < ends:
        return progress
    old = other_colour(status.live_colour)
    return _succeeded(progress, now, f"grace period over; {old} scaled to zero")


def _superseded(
    plan: ScalePlan, status: ScalePlanStatus, progress: Progress, observed: Observed, now: datetime
) -> Progress:
    """spec.app changed again while a rollout was in progress."""
    ro = progress.rollout
    assert ro is not None
    wanted = revision_of(plan.spec.app)
    if ro.step == RolloutStep.GRACE and ro.previous is not None and ro.previous.revision == wanted:
        # The instant rollback the grace period exists for, once the old colour (still
        # scaled, and watched as the rollout's second track) is Ready.
        back = other_colour(status.live_colour)
        if observed.not_ready:
            message = f"switching back to {back} once {', '.join(observed.not_ready[:5])} is Ready"
            if ro.message != message:
                progress.rollout = ro.model_copy(update={"message": message})
            return progress
        progress.live_colour = back
        progress.release = ro.previous
        progress.rollout = _step(
            ro, RolloutStep.SWITCH, now, f"switching the Service back to {back}"
        )
        return progress
    if ro.step == RolloutStep.GRACE:
        # The new release is live already: end its grace, then roll the newer one out.
        done = _succeeded(progress, now, "grace period cut short by a newer release")
        return _then_start(plan, status, done, now)
    if status.release is not None and status.release.revision == wanted:
        return _rolled_back(progress, now, "spec.app went back to the running release")
    restarted = start(plan, status, now)
    restarted.events = [
        ("Normal", "RolloutSuperseded", f"{ro.revision} superseded by {wanted} before it finished"),
        *restarted.events,
    ]
    return restarted


def _then_start(
    plan: ScalePlan, status: ScalePlanStatus, done: Progress, now: datetime
) -> Progress:
    """A rollout of spec.app, started right after the one that `done` ended."""
    after = status.model_copy(
        update={"rollout": done.rollout, "release": done.release, "live_colour": done.live_colour}
    )
    restarted = start(plan, after, now)
    restarted.events = [*done.events, *restarted.events]
    return restarted


def _maybe_deadline(
    plan: ScalePlan, progress: Progress, observed: Observed, now: datetime
) -> Progress:
    ro = progress.rollout
    assert ro is not None
    deadline = plan.spec.rollout.rolling.progress_deadline_seconds
    since = (now - (ro.step_started_at or ro.started_at)).total_seconds()
    waiting = ", ".join(observed.not_ready[:5])
    if since <= deadline:
        message = f"{ro.step}: waiting for {waiting}"
        if ro.message != message:
            progress.rollout = ro.model_copy(update={"message": message})
        return progress
    return _rolled_back(
        progress, now, f"progress deadline ({deadline}s) passed with {waiting} not Ready"
    )


def _checked(
    plan: ScalePlan, progress: Progress, reading: CanaryReading, now: datetime
) -> Progress:
    ro = progress.rollout
    assert ro is not None and ro.canary is not None
    spec = plan.spec.rollout.canary
    verdict = judge(reading, plan)
    canary = ro.canary.model_copy(
        update={
            "last_check_at": now,
            "error_rate": reading.error_rate,
            "p95_latency_seconds": reading.p95_latency_seconds,
        }
    )
    if verdict is None:
        canary.iteration += 1
        summary = f"check {canary.iteration}/{spec.iterations} passed: {describe(reading)}"
        progress.events.append(("Normal", "CanaryCheckPassed", summary))
        if canary.iteration >= spec.iterations:
            progress.rollout = _step(ro, RolloutStep.PROMOTE, now, "promoting the canary to stable")
            progress.rollout.canary = canary
            progress.events.append(
                ("Normal", "CanaryPromoted", f"{ro.image} passed {spec.iterations} checks")
            )
            return progress
        canary.weight_percent = _weight(plan, canary.iteration)
        # More canary pods start now: their wait for Ready counts from here.
        progress.rollout = ro.model_copy(
            update={
                "canary": canary,
                "step_started_at": now,
                "message": f"{summary}; weight {canary.weight_percent}%",
            }
        )
        return progress
    canary.failed_checks += 1
    summary = f"check failed ({canary.failed_checks}/{spec.threshold}): {verdict}"
    progress.events.append(("Warning", "CanaryCheckFailed", summary))
    progress.rollout = ro.model_copy(update={"canary": canary, "message": summary})
    if canary.failed_checks >= spec.threshold:
        return _rolled_back(
            progress, now, f"{canary.failed_checks} failed checks; the stable track kept serving"
        )
    return progress


def roll_back(status: ScalePlanStatus, now: datetime, why: str) -> Progress:
    """End the rollout in progress as rolled back, e.g. when the API server refused it."""
    ro = status.rollout
    assert ro is not None
    return _rolled_back(Progress(ro, status.release, status.live_colour), now, why)


def judge(reading: CanaryReading, plan: ScalePlan) -> str | None:
    """Why a canary reading fails the plan's thresholds, or None when it passes. A missing
    value fails: a canary cannot be shown healthy without its metrics."""
    spec = plan.spec.rollout.canary
    if reading.error is not None:
        return f"metrics unavailable: {reading.error}"
    problems = []
    if reading.error_rate is None:
        problems.append("no error-rate data (is the canary receiving traffic?)")
    elif reading.error_rate > spec.max_error_rate:
        problems.append(f"error rate {reading.error_rate:.4f} > {spec.max_error_rate}")
    if reading.p95_latency_seconds is None:
        problems.append("no latency data")
    elif reading.p95_latency_seconds > spec.max_p95_latency_seconds:
        problems.append(
            f"p95 latency {reading.p95_latency_seconds:.3f}s > {spec.max_p95_latency_seconds}s"
        )
    return "; ".join(problems) or None


def describe(reading: CanaryReading) -> str:
    def show(value: float | None, fmt: str, unit: str = "") -> str:
        return "n/a" if value is None else format(value, fmt) + unit

    return (
        f"error rate {show(reading.error_rate, '.4f')}, "
        f"p95 {show(reading.p95_latency_seconds, '.3f', 's')}"
    )


# ------------------------------------------------------------------ helpers


def _weight(plan: ScalePlan, passed: int) -> int:
    return min(plan.spec.rollout.canary.weight_percent * (passed + 1), MAX_CANARY_WEIGHT)


def _next_check_at(plan: ScalePlan, ro: RolloutStatus) -> datetime:
    last = ro.canary.last_check_at if ro.canary is not None else None
    base = last or ro.step_started_at or ro.started_at
    return base + timedelta(seconds=plan.spec.rollout.canary.interval_seconds)


def _deploy_message(strategy: RolloutStrategy) -> str:
    return {
        RolloutStrategy.RECREATE: "replacing the pod",
        RolloutStrategy.BLUE_GREEN: "scaling up the idle colour with the new release",
        RolloutStrategy.ROLLING: "rolling the pods (maxUnavailable 0)",
        RolloutStrategy.CANARY: "starting the canaries",
    }[strategy]


def _step(ro: RolloutStatus, step: RolloutStep, now: datetime, message: str) -> RolloutStatus:
    return ro.model_copy(update={"step": step, "step_started_at": now, "message": message})


def _finish(ro: RolloutStatus, state: RolloutState, now: datetime, message: str) -> RolloutStatus:
    return ro.model_copy(
        update={
            "state": state,
            "step": RolloutStep.DONE,
            "step_started_at": now,
            "finished_at": now,
            "message": message,
            "previous": None,
        }
    )


def _succeeded(
    progress: Progress, now: datetime, detail: str, release: Release | None = None
) -> Progress:
    """Finish the rollout; `release` is what now runs, unless the switch already said so."""
    ro = progress.rollout
    assert ro is not None
    if release is not None:
        progress.release = release
    progress.rollout = _finish(ro, RolloutState.SUCCEEDED, now, f"{ro.image} rolled out: {detail}")
    progress.events.append(("Normal", "RolloutSucceeded", progress.rollout.message))
    return progress


def _rolled_back(progress: Progress, now: datetime, why: str) -> Progress:
    ro = progress.rollout
    assert ro is not None
    progress.rollout = _finish(ro, RolloutState.ROLLED_BACK, now, f"{ro.image} rolled back: {why}")
    progress.events.append(("Warning", "RolloutRolledBack", progress.rollout.message))
    return progress
