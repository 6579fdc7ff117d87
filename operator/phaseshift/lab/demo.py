"""`phaseshift demo`: the 0 -> 1M users journey on a local control plane.

Real: the control plane (etcd, kube-apiserver, controllers, kwok nodes), the operator
(`phaseshift run` as its own process), Prometheus. Modelled: the application's traffic
(lab/traffic.py), because kwok's pods run no containers. Everything started here is
stopped in `finally`, also on Ctrl-C, SIGTERM or failure.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from kubernetes import client, config

from phaseshift.api import GROUP, PLURAL, VERSION
from phaseshift.kube import Kube
from phaseshift.lab import cluster as local_cluster
from phaseshift.lab.exporter import TrafficExporter
from phaseshift.lab.liveview import LiveView, Snapshot
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.lab.report import Move, Sample, summarise, write_chart, write_markdown
from phaseshift.lab.scenario import (
    PROFILES,
    SHOP_PLAN,
    Compression,
    Profile,
    demo_plan,
    describe_compression,
)
from phaseshift.lab.traffic import CALIBRATION
from phaseshift.planview import load_plan, render_file
from phaseshift.render.totals import resource_totals

NAMESPACE = "default"
PLAN = "shop"
SAMPLE_SECONDS = 0.5
# After the day ends, the last demotions may still be on their way.
SETTLE_SECONDS = 30.0


def cluster_name(check: bool) -> str:
    """`demo` for people; CI and tests name their own so they never meet a user's."""
    return os.environ.get("PHASESHIFT_DEMO_CLUSTER") or ("demo-check" if check else "demo")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Observer:
    """Reads what the view and the report need from the API server."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.kube = Kube(api)

    def status(self) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, PLAN)
        return dict(obj.get("status") or {})

    def events(self, limit: int = 5) -> list[str]:
        items = self.core.list_namespaced_event(
            NAMESPACE, field_selector=f"involvedObject.name={PLAN}"
        ).items
        items = [e for e in items if e.involved_object.kind == "ScalePlan"]
        items.sort(
            key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
        )
        return [f"{e.reason}: {e.message}" for e in items[-limit:]]

    def requests(self) -> tuple[int, int]:
        return resource_totals(self.kube.list_managed(NAMESPACE, PLAN))


def _moves(samples: list[Sample], status: dict[str, Any]) -> list[Move]:
    """Transitions where the sampled phase changed; durations from status.history."""
    durations: dict[tuple[int, int], list[float]] = {}
    for h in status.get("history") or []:
        durations.setdefault((h["from"], h["to"]), []).append(float(h.get("durationSeconds", 0)))
    moves = []
    for a, b in itertools.pairwise(samples):
        if a.phase != b.phase:
            known = durations.get((a.phase, b.phase)) or [0.0]
            moves.append(Move(b.seconds, a.phase, b.phase, known.pop(0)))
    return moves


def _wait_serving(observer: Observer, exporter: TrafficExporter, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = observer.status()
        traffic = exporter.latest
        if status.get("phase") == 1 and traffic is not None and traffic.error_rate == 0:
            return
        if not exporter.alive():
            raise RuntimeError("the traffic model stopped; see the traceback above")
        time.sleep(SAMPLE_SECONDS)
    raise RuntimeError(
        f"phase 1 did not start serving in {timeout:.0f}s; status: {observer.status()}"
    )


def run_day(
    profile: Profile,
    speed: float,
    check: bool,
    results: Path,
    kubeconfig: Path,
    prom: PrometheusServer,
) -> int:
    stack = ExitStack()
    with stack:
        results.mkdir(parents=True, exist_ok=True)
        local_cluster.install_crd(kubeconfig)
        api = config.new_client_from_config(config_file=str(kubeconfig))
        observer = Observer(api)

        day_seconds = profile.seconds / speed
        clock = {"start": time.monotonic()}

        def users() -> float:
            elapsed = max(0.0, time.monotonic() - clock["start"])
            return profile.users(min(1.0, elapsed / day_seconds))

        exporter = TrafficExporter(Kube(api), NAMESPACE, PLAN, users)
        stack.callback(exporter.close)
        prom.add_target("traffic-model", exporter.address)

        operator = OperatorProcess(kubeconfig, NAMESPACE, results / "operator.log")
        stack.callback(operator.stop)
        operator.start()

        compression = Compression.for_speed(profile, speed)
        original = yaml.safe_load(SHOP_PLAN.read_text())
        notes = [
            f"profile {profile.name!r}: {profile.peak_users:,.0f} users at the peak, the day in "
            f"{day_seconds:.0f} s of wall time (speed {speed:g})",
            "examples/shop.yaml, with metrics.prometheusUrl set to the local Prometheus "
            f"({prom.url}) and its windows compressed: "
            + "; ".join(describe_compression(original, compression)),
            "real: control plane (kwok nodes), the operator process, Prometheus; "
            "modelled: the application's traffic (phaseshift/lab/traffic.py)",
        ]
        for note in notes:
            print(note, flush=True)
        body = demo_plan(prom.url, compression)
        body["metadata"]["namespace"] = NAMESPACE
        observer.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        # The day begins once phase 1 serves: the first deploy is not part of it.
        clock["start"] = float("inf")
        _wait_serving(observer, exporter)
        clock["start"] = time.monotonic()

        samples: list[Sample] = []
        view = stack.enter_context(LiveView(CALIBRATION.slo_p95_seconds, day_seconds))
        status: dict[str, Any] = {}
        end = day_seconds + SETTLE_SECONDS
        while True:
            elapsed = time.monotonic() - clock["start"]
            status = observer.status()
            traffic = exporter.latest
            if not exporter.alive():
                raise RuntimeError("the traffic model stopped; see the traceback above")
            if traffic is None:
                time.sleep(SAMPLE_SECONDS)
                continue
            transition = status.get("transition") or {}
            steps = transition.get("steps") or []
            index = int(transition.get("step", 0))
            step = steps[index] if index < len(steps) else ""
            cpu, memory = observer.requests()
            phase = int(status.get("phase") or 1)
            sample = Sample(
                elapsed, traffic.users, traffic.rps, traffic.p95_seconds, traffic.error_rate,
                phase, int(status.get("targetPhase") or phase), step, cpu, memory,
            )  # fmt: skip
            samples.append(sample)
            view.update(Snapshot(sample, observer.events()))
            settled = not transition and phase <= 2
            if elapsed >= end or (elapsed >= day_seconds and settled):
                break
            time.sleep(SAMPLE_SECONDS)

    moves = _moves(samples, status)
    plan = load_plan(SHOP_PLAN)
    summary = summarise(
        [s for s in samples if s.seconds <= day_seconds] or samples,
        moves,
        day_seconds=day_seconds,
        slo_seconds=CALIBRATION.slo_p95_seconds,
        phase4=resource_totals(render_file(plan, 4)),
    )
    # The settling after the day still counts for where the plan went and ended.
    summary.peak_phase = max(s.phase for s in samples)
    summary.final_phase = samples[-1].phase
    problems = summary.check(profile.peaks) if check else []
    chart = results / "demo.png"
    write_chart(samples, moves, CALIBRATION.slo_p95_seconds, chart)
    write_markdown(summary, notes, chart, results / "demo.md", problems)
    print("\nSummary")
    for line in summary.lines():
        print(f"  {line}")
    print(f"report: {results / 'demo.md'} and {chart}")
    for problem in problems:
        print(f"check failed: {problem}", file=sys.stderr)
    return 1 if problems else 0


def demo_command(speed: float, profile: str, check: bool, results: Path) -> int:
    if speed <= 0:
        print("phaseshift demo: --speed must be positive", file=sys.stderr)
        return 2
    chosen = PROFILES.get("check" if check and profile == "day" else profile)
    if chosen is None:
        print(
            f"phaseshift demo: no profile {profile!r}; choose from {', '.join(PROFILES)}",
            file=sys.stderr,
        )
        return 2
    name = cluster_name(check)
    if local_cluster.LocalCluster(name).is_running():
        print(
            f"phaseshift demo: a cluster named {name!r} is already running (another demo?). "
            f"Stop it with `phaseshift cluster down --name {name}`, then run the demo again.",
            file=sys.stderr,
        )
        return 2
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(f"starting the local control plane {name!r} and Prometheus ...", flush=True)
        started = local_cluster.up(name, nodes=3, with_prometheus=True)
        prom = PrometheusServer(started.prometheus_dir)
        return run_day(chosen, speed, check, results, started.kubeconfig, prom)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except (local_cluster.ClusterError, RuntimeError) as e:
        print(f"phaseshift demo: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # any failure still reaches the cleanup below
        print(f"phaseshift demo failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        local_cluster.down(name)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        print(f"stopped cluster {name!r}, the operator and the traffic model", flush=True)
