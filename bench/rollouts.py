"""Benchmark: rollouts of a new spec.app with each phase's strategy, end to end.

    .venv/bin/python bench/rollouts.py [--runs 3] [--failure-runs 3] [--interval 1]
        [--steady-ticks 10] [--grace 2] [--deadline 5] [--phases 1 2 3 4]
        [--name bench-rollouts]

Starts its own cluster (--name), a Prometheus in a temp dir scraping a synthetic exporter
(phaseshift.lab.exporter), applies the CRD and, for each strategy in turn, runs
`phaseshift run` as a subprocess watching only that strategy's namespace
(phaseshift.lab.operator_process, as the integration tests do), so the operator's counters belong to one
plan. Each plan is pinned to its phase (minPhase = maxPhase), evaluated every --interval
seconds, and rolled from one image to the next (registry.example/shop:2.0, 2.1, ...):

  phase 1  Recreate
  phase 2  BlueGreen  spec.rollout.blueGreen.graceSeconds = --grace
  phase 3  Rolling    spec.rollout.rolling.progressDeadlineSeconds = --deadline
  phase 4  Canary     intervalSeconds 2, iterations 3, threshold 2, weightPercent 20; the
                      exporter keeps both tracks' requests and latency moving (healthy:
                      no 5xx, 50 ms)

The status is polled every 0.1 s. Per strategy it prints, as median, min and max over
--runs rollouts:

1. patch -> Succeeded: wall clock from the spec.app patch to status.rollout.state ==
   Succeeded; and patch -> the rollout's first status seen (Progressing), which is bounded
   by the evaluation interval.
2. the operator's write calls (delta of phaseshift_api_writes_total) from the patch to the
   end of the tick that recorded Succeeded (it applies the end after writing it, e.g. the
   idle canaries), and over the next --steady-ticks evaluations of the plan
   (phaseshift_evaluations_total) counted from then on (expected: 0); and
   the operator's mean tick duration (phaseshift_tick_duration_seconds) meanwhile.
3. blue-green: patch -> idle colour scaled up with the new image -> its Deployment Ready
   (all replicas ready and updated, generation observed) -> the Service's selector on
   that colour, each as observed; the Grace step seen -> Succeeded; and how many samples
   found the Service selecting a colour whose Deployment was not Ready (expected: 0).
4. canary: by the operator's own timestamps (the Analyse step's stepStartedAt, then each
   check's canary.lastCheckAt), the time to the first check and between checks.
5. rolling: an unschedulable release (cpu requests and limits "1000") from the patch to
   RolledBack, --failure-runs times (expected: about the deadline plus one poll); and
   canary: with half the canary track's requests answered 5xx, from the patch to
   RolledBack, --failure-runs times. Also the writes meanwhile, and the time until every
   app Deployment is Ready again.

Each rollout also gets a line with its timeline (status.rollout as it changed) and the
reasons of the Events posted meanwhile. It prints figures and asserts nothing;
everything it starts is stopped by PID, also when it fails or is interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.lab.wait import wait_for
from phaseshift.transition import workload_ready

# bench/ is not a package, and bench/sample_app.py (first on sys.path) would shadow the
# sample_app package that phaseshift.lab.exporter imports: the repository root goes first.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from bench.harness import bench_world, make_namespace, metric_samples, operator_in  # noqa: E402
from phaseshift.lab.exporter import SyntheticExporter  # noqa: E402
from phaseshift.lab.plans import PLAN, USERS_FOR_PHASE, World, plan_body  # noqa: E402
from phaseshift.lab.rollouts import (  # noqa: E402
    UNSCHEDULABLE,
    Traffic,
    canary_error_rate,
    deployment,
    image,
    rollout_of,
    selected_colour,
    serving,
    set_app,
)

POLL = 0.1
IMAGE = "registry.example/shop"
STRATEGIES = {1: "Recreate", 2: "BlueGreen", 3: "Rolling", 4: "Canary"}
CANARY = {
    "intervalSeconds": 2,
    "iterations": 3,
    "threshold": 2,
    "weightPercent": 20,
    "maxErrorRate": 0.05,
    "maxP95LatencySeconds": 0.5,
}


# ------------------------------------------------------------------ plumbing


def writes_by_verb(operator: OperatorProcess) -> dict[str, float]:
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    samples = metric_samples(url, "phaseshift_api_writes_total")
    return {dict(labels)["verb"]: value for labels, value in samples.items()}


def evaluations(operator: OperatorProcess) -> float:
    return operator.metric("phaseshift_evaluations_total")


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def show_verbs(counts: dict[str, float]) -> str:
    return ", ".join(f"{verb} {n:.0f}" for verb, n in sorted(counts.items())) or "-"


# ------------------------------------------------------------------ the plan's world


def settled(world: World) -> bool:
    """Every app Deployment of the plan that should run pods runs them, Ready."""
    deployments = world.kube.list_managed(world.namespace, PLAN, [("apps/v1", "Deployment")])
    return all(workload_ready(d) for d in deployments if d["spec"].get("replicas", 1) > 0)


def events_since(world: World, since: datetime) -> list[str]:
    """Reasons of the plan's Events posted at or after `since`, oldest first."""
    # Read as plain objects: the typed client refuses Events without an eventTime.
    resource = world.kube.dynamic.resources.get(api_version="events.k8s.io/v1", kind="Event")
    found = []
    for e in resource.get(namespace=world.namespace).to_dict()["items"]:
        at = e.get("eventTime")
        if (e.get("regarding") or {}).get("kind") != "ScalePlan" or not at:
            continue
        if datetime.fromisoformat(at) >= since:
            found.append((datetime.fromisoformat(at), str(e.get("reason"))))
    return [reason for _, reason in sorted(found)]


def pinned_plan(prometheus_url: str, phase: int, args: argparse.Namespace) -> dict[str, Any]:
    body = plan_body(prometheus_url, interval=args.interval, minPhase=phase, maxPhase=phase)
    body["spec"]["app"] = {"image": f"{IMAGE}:1.0"}
    body["spec"]["rollout"] = {
        "blueGreen": {"graceSeconds": args.grace},
        "rolling": {"progressDeadlineSeconds": args.deadline},
        "canary": CANARY,
    }
    return body


# ------------------------------------------------------------------ measuring


@dataclass
class Rollout:
    seconds: float
    writes: dict[str, float]
    rollout: dict[str, Any]
    timeline: list[tuple[float, str]]
    """(seconds since the patch, what status.rollout showed) at each observed change."""
    snapshots: list[dict[str, Any]]
    """status.rollout at each observed change."""
    events: list[str] = field(default_factory=list)
    """Reasons of the Events the operator posted about the plan during the rollout."""
    tick_seconds: float | None = None
    """The operator's mean tick duration over the rollout."""
    steady_writes: dict[str, float] = field(default_factory=dict)
    steady_ticks: float = 0.0
    recovered_seconds: float | None = None
    """After a rollback: until every app Deployment is Ready again."""
    colours: ColourSampler | None = None

    def marks(self, prefix: str) -> list[float]:
        """When the timeline first showed each state starting with `prefix`."""
        return [at for at, what in self.timeline if what.startswith(prefix)]

    def check_gaps(self) -> list[float]:
        """Seconds between the canary checks by the operator's own clock: from the
        Analyse step's stepStartedAt to the first check, then from check to check (each
        check's canary.lastCheckAt, taken when its passed or failed count went up)."""
        points: list[datetime] = []
        done = 0
        for ro in self.snapshots:
            canary = ro.get("canary") or {}
            if not points and ro.get("step") == "Analyse":
                points.append(datetime.fromisoformat(ro["stepStartedAt"]))
            checks = canary.get("iteration", 0) + canary.get("failedChecks", 0)
            if points and checks > done and canary.get("lastCheckAt"):
                points.append(datetime.fromisoformat(canary["lastCheckAt"]))
            done = max(done, checks)
        return [(b - a).total_seconds() for a, b in itertools.pairwise(points)]


class ColourSampler:
    """Blue-green: the idle colour's Deployment and the Service's selector, per sample."""

    def __init__(self, world: World, new_image: str) -> None:
        self.world = world
        self.new_image = new_image
        self.old_colour = str(world.status().get("liveColour") or "blue")
        self.new_colour = "green" if self.old_colour == "blue" else "blue"
        self.patched_at: float | None = None
        self.applied_at: float | None = None
        self.ready_at: float | None = None
        self.switched_at: float | None = None
        self.samples = 0
        self.unready: list[tuple[str, str]] = []

    def __call__(self) -> None:
        # Deployments first, then the Service: a switch can only follow a Ready colour.
        deps = {c: deployment(self.world, f"app-{c}") for c in ("blue", "green")}
        seen = time.monotonic()
        selected = selected_colour(self.world)
        switched = time.monotonic()
        self.samples += 1
        new = deps[self.new_colour]
        scaled = new["spec"].get("replicas", 1) > 0
        if self.applied_at is None and scaled and image(new) == self.new_image:
            self.applied_at = seen
        if self.ready_at is None and workload_ready(new) and image(new) == self.new_image:
            self.ready_at = seen
        if self.switched_at is None and selected == self.new_colour:
            self.switched_at = switched
        routed = deps.get(selected)
        if routed is None or not serving(routed):
            self.unready.append((selected, image(routed) if routed else "-"))

    def between(self, a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a


def describe(ro: dict[str, Any]) -> str:
    """state/step, and for a canary: passed+failed checks and the weight."""
    canary = ro.get("canary") or {}
    what = f"{ro.get('state')}/{ro.get('step')}"
    if canary:
        what += f" checks {canary.get('iteration', 0)}+{canary.get('failedChecks', 0)}"
        what += f" {canary.get('weightPercent', 0)}%"
    return what


def follow(
    world: World,
    image_: str,
    state: str,
    since: float,
    sample: Callable[[], None] | None = None,
    timeout: float = 180.0,
) -> tuple[float, dict[str, Any], list[tuple[float, str]], list[dict[str, Any]]]:
    """Poll every POLL s until status.rollout is `state` for `image_`.

    Returns the seconds from `since`, the final status.rollout, its timeline and the
    status.rollout seen at each change."""
    deadline = since + timeout
    timeline: list[tuple[float, str]] = []
    snapshots: list[dict[str, Any]] = []
    while True:
        tick = time.monotonic()
        if sample is not None:
            sample()
        ro = rollout_of(world)
        seen = time.monotonic()
        if ro.get("image") == image_:
            what = describe(ro)
            if not timeline or timeline[-1][1] != what:
                timeline.append((seen - since, what))
                snapshots.append(ro)
            if ro.get("state") in (state, "Succeeded", "RolledBack"):
                if ro["state"] != state:
                    raise RuntimeError(
                        f"rollout of {image_} ended {ro['state']}: {ro.get('message')}"
                    )
                return seen - since, ro, timeline, snapshots
        if tick > deadline:
            raise RuntimeError(f"rollout of {image_} not {state} after {timeout:.0f}s: {ro}")
        time.sleep(max(0.0, POLL - (time.monotonic() - tick)))


def steady(
    operator: OperatorProcess, ticks: int, interval: float
) -> tuple[dict[str, float], float]:
    """Writes by verb over the next `ticks` evaluations of the (only) plan, from now."""
    writes = writes_by_verb(operator)
    start = evaluations(operator)
    wait_for(
        lambda: evaluations(operator) >= start + ticks,
        ticks * interval * 3 + 30,
        f"{ticks} steady ticks",
        poll=0.05,
    )
    return delta(writes_by_verb(operator), writes), evaluations(operator) - start


def tick_totals(operator: OperatorProcess) -> tuple[float, float]:
    """(sum, count) of the operator's phaseshift_tick_duration_seconds."""
    return (
        operator.metric("phaseshift_tick_duration_seconds_sum"),
        operator.metric("phaseshift_tick_duration_seconds_count"),
    )


def roll(
    world: World,
    operator: OperatorProcess,
    image_: str,
    *,
    state: str = "Succeeded",
    resources: dict[str, Any] | None = None,
    colours: bool = False,
    steady_ticks: int = 0,
    interval: float = 1.0,
) -> Rollout:
    sampler = ColourSampler(world, image_) if colours else None
    before, ticks_before = writes_by_verb(operator), tick_totals(operator)
    patched = datetime.now(UTC)
    set_app(world, image_, resources)
    since = time.monotonic()
    if sampler is not None:
        sampler.patched_at = since
    seconds, ro, timeline, snapshots = follow(world, image_, state, since, sampler)
    # The tick that recorded the end applies it after the write (e.g. idle canaries):
    # count its writes with the rollout's, not with the steady ticks after it.
    ended = tick_totals(operator)[1]
    wait_for(lambda: tick_totals(operator)[1] > ended, 30, "the last rollout tick", poll=0.02)
    writes, ticks_after = delta(writes_by_verb(operator), before), tick_totals(operator)
    result = Rollout(seconds, writes, ro, timeline, snapshots, events_since(world, patched))
    result.colours = sampler
    count = ticks_after[1] - ticks_before[1]
    if count:
        result.tick_seconds = (ticks_after[0] - ticks_before[0]) / count
    if sampler is not None and sampler.unready:
        print(f"    routed to a not-Ready colour: {sampler.unready[:5]}", flush=True)
    if state == "RolledBack":
        result.recovered_seconds = wait_for(
            lambda: settled(world) and time.monotonic() - since - seconds,
            90,
            "every app Deployment Ready after the rollback",
            poll=POLL,
        )
    if steady_ticks:
        result.steady_writes, result.steady_ticks = steady(operator, steady_ticks, interval)
    return result


# ------------------------------------------------------------------ per strategy


@dataclass
class StrategyReport:
    phase: int
    healthy: list[Rollout] = field(default_factory=list)
    failed: list[Rollout] = field(default_factory=list)
    setup_seconds: float = 0.0


def show_run(name: str, i: int, run: Rollout) -> None:
    state = run.rollout.get("state")
    tick = f"{run.tick_seconds * 1000:.0f} ms" if run.tick_seconds is not None else "-"
    text = (
        f"  {name} #{i + 1}: {state} after {run.seconds:.2f} s, "
        f"writes {sum(run.writes.values()):.0f} ({show_verbs(run.writes)}), mean tick {tick}"
    )
    if run.steady_ticks:
        text += (
            f"; {sum(run.steady_writes.values()):.0f} writes over {run.steady_ticks:.0f} "
            f"steady ticks ({show_verbs(run.steady_writes)})"
        )
    if run.recovered_seconds is not None:
        text += f"; Ready again {run.recovered_seconds:.2f} s after the rollback"
    c = run.colours
    if c is not None:
        applied, ready_ = c.between(c.applied_at, c.ready_at), c.between(c.ready_at, c.switched_at)
        text += (
            f"; idle colour applied -> Ready {applied or 0:.2f} s, Ready -> switch "
            f"{ready_ or 0:.2f} s, {len(c.unready)}/{c.samples} samples not Ready"
        )
    print(text, flush=True)
    steps = ", ".join(f"{at:.2f} {what}" for at, what in run.timeline)
    print(f"    timeline: {steps}", flush=True)
    print(f"    events: {', '.join(run.events) or '-'}", flush=True)
    if run.rollout.get("canary"):
        gaps = ", ".join(f"{g:.2f}" for g in run.check_gaps())
        print(f"    Analyse -> check -> check (by status): {gaps or '-'} s", flush=True)

    if state == "RolledBack":
        print(f"    {run.rollout.get('message')}", flush=True)


def bench_strategy(
    phase: int,
    args: argparse.Namespace,
    api: client.ApiClient,
    kubeconfig: Path,
    exporter: SyntheticExporter,
    prometheus: PrometheusServer,
    log_dir: Path,
) -> StrategyReport:
    report = StrategyReport(phase)
    started = time.monotonic()
    namespace = make_namespace(api, phase)
    world = World(api, namespace, exporter)
    world.users(USERS_FOR_PHASE[phase])
    name = STRATEGIES[phase]
    with operator_in(kubeconfig, namespace, log_dir) as operator, Traffic(exporter, namespace) as t:
        world.create(pinned_plan(prometheus.url, phase, args))
        wait_for(lambda: world.settled_in(phase), 120, f"{name} in phase {phase}", poll=0.25)
        wait_for(lambda: world.status().get("release"), 60, "the first release in status")
        wait_for(lambda: settled(world), 180, f"phase {phase} Ready", poll=0.5)
        if phase == 4:
            wait_for(
                lambda: canary_error_rate(world) == 0.0, 60, "canary metrics in Prometheus", 0.5
            )
        report.setup_seconds = time.monotonic() - started
        print(f"{name}: phase {phase} up in {report.setup_seconds:.1f} s", flush=True)

        for i in range(args.runs):
            run = roll(
                world,
                operator,
                f"{IMAGE}:2.{i}",
                colours=phase == 2,
                steady_ticks=args.steady_ticks,
                interval=args.interval,
            )
            report.healthy.append(run)
            show_run(name, i, run)
            wait_for(lambda: settled(world), 60, "the plan settled after the rollout")

        if phase in (3, 4):
            if phase == 4:
                t.error_share = 0.5
                wait_for(
                    lambda: (canary_error_rate(world) or 0) > CANARY["maxErrorRate"],
                    90,
                    "the canary error rate to rise",
                    0.5,
                )
            for i in range(args.failure_runs):
                run = roll(
                    world,
                    operator,
                    f"{IMAGE}:bad-{i}",
                    state="RolledBack",
                    resources=UNSCHEDULABLE if phase == 3 else None,
                )
                report.failed.append(run)
                show_run(f"{name} failing", i, run)
    return report


# ------------------------------------------------------------------ the table


def spread(values: list[float], fmt: str = "{:.2f}", unit: str = " s") -> list[str]:
    if not values:
        return ["-", "-", "-"]
    return [
        fmt.format(statistics.median(values)) + unit,
        fmt.format(min(values)) + unit,
        fmt.format(max(values)) + unit,
    ]


def line(label: str, cells: list[str], runs: int | str) -> str:
    return f"  {label:<58} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {runs!s:>5}"


def some(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def table(reports: list[StrategyReport], args: argparse.Namespace) -> list[str]:
    out = [line("strategy / measure", ["median", "min", "max"], "n")]

    def add(label: str, values: list[float], fmt: str = "{:.2f}", unit: str = " s") -> None:
        out.append(line(f"  {label}", spread(values, fmt, unit), len(values)))

    def count(label: str, values: list[float]) -> None:
        add(label, values, "{:.0f}", "")

    for report in reports:
        runs, failed = report.healthy, report.failed
        out.append(f"  {STRATEGIES[report.phase]} (phase {report.phase})")
        add("patch -> Succeeded", [r.seconds for r in runs])
        add("patch -> rollout started (Progressing seen)", [r.timeline[0][0] for r in runs])
        count("operator writes, patch -> Succeeded", [sum(r.writes.values()) for r in runs])
        ticks = min((r.steady_ticks for r in runs), default=0)
        count(
            f"operator writes, {ticks:.0f} steady ticks after Succeeded",
            [sum(r.steady_writes.values()) for r in runs],
        )
        add(
            "operator tick duration during the rollout (mean)",
            some([r.tick_seconds for r in runs]),
        )
        if report.phase == 2:
            colours = [r.colours for r in runs if r.colours is not None]
            add(
                "patch -> idle colour scaled up, new image (observed)",
                some([c.between(c.patched_at, c.applied_at) for c in colours]),
            )
            add(
                "idle colour applied -> Ready (observed)",
                some([c.between(c.applied_at, c.ready_at) for c in colours]),
            )
            add(
                "idle colour Ready -> Service switched",
                some([c.between(c.ready_at, c.switched_at) for c in colours]),
            )
            add(
                f"Grace step seen -> Succeeded (grace {args.grace} s)",
                [
                    r.seconds - r.marks("Progressing/Grace")[0]
                    for r in runs
                    if r.marks("Progressing/Grace")
                ],
            )
            unready = sum(len(c.unready) for c in colours)
            samples = sum(c.samples for c in colours)
            out.append(
                line(
                    "    samples routed to a not-Ready colour",
                    [f"{unready}/{samples}", "", ""],
                    len(colours),
                )
            )
        if report.phase == 4:
            gaps = [r.check_gaps() for r in runs]
            add(
                f"Analyse started -> 1st check (interval {CANARY['intervalSeconds']} s)",
                [g[0] for g in gaps if g],
            )
            add("check -> next check (by status)", [x for g in gaps for x in g[1:]])
        if failed:
            if report.phase == 3:
                label = f"unschedulable release -> RolledBack (deadline {args.deadline} s)"
            else:
                label = f"50% 5xx canary -> RolledBack (threshold {CANARY['threshold']})"
            add(label, [r.seconds for r in failed])
            count("operator writes, patch -> RolledBack", [sum(r.writes.values()) for r in failed])
            add(
                "RolledBack -> app Deployments Ready again",
                some([r.recovered_seconds for r in failed]),
            )
            if report.phase == 4:
                gaps = [r.check_gaps() for r in failed]
                add("  Analyse started -> 1st check (by status)", [g[0] for g in gaps if g])
                add("  check -> next check (by status)", [x for g in gaps for x in g[1:]])
    return out


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bench-rollouts", help="cluster name to use")
    parser.add_argument("--runs", type=int, default=3, help="healthy rollouts per strategy")
    parser.add_argument("--failure-runs", type=int, default=3, help="failing rollouts timed")
    parser.add_argument("--interval", type=int, default=1, help="evaluation interval, s")
    parser.add_argument("--steady-ticks", type=int, default=10)
    parser.add_argument("--grace", type=int, default=2, help="blue-green graceSeconds")
    parser.add_argument("--deadline", type=int, default=5, help="progressDeadlineSeconds")
    parser.add_argument("--phases", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    args = parser.parse_args()

    began = time.monotonic()
    reports: list[StrategyReport] = []
    with bench_world(args.name) as env:
        print(f"cluster and Prometheus up in {time.monotonic() - began:.1f} s", flush=True)
        for phase in args.phases:
            reports.append(
                bench_strategy(
                    phase, args, env.api, env.kubeconfig, env.exporter, env.prometheus, env.log_dir
                )
            )
    print()
    print(
        f"rollouts, evaluation interval {args.interval} s, API polled every {POLL} s "
        f"(total {time.monotonic() - began:.0f} s)"
    )
    for text in table(reports, args):
        print(text)


if __name__ == "__main__":
    main()
