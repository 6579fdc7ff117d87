"""Benchmark: what each transition costs the users writing through it, on the real node.

    .venv/bin/python bench/transitions_real.py [--name bench-transitions] [--path 1,2,3,4,3,2,1]

The shop (examples/laptop.yaml's sizes) starts pinned to the path's first phase; a
writer creates users through the app's entry Service from the host without pause the
whole time, and minPhase/maxPhase move the plan along the path one phase at a time.
Prints, per transition:

- its duration (status.history's durationSeconds);
- the writes that failed (no answer, or an error other than 503) and those refused
  (503: the migration's freeze), and the seconds from the first refused write to the
  last;
- p95 write latency during the transition, beside the 20 s of steady state before it;

and, at the end, how many acknowledged writes could not be read back (there must be
none). It reuses a running cluster with a real node of that name, else starts and stops
its own. It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from phaseshift.lab import cluster as local_cluster
from phaseshift.lab.realshop import (
    PLAN,
    apply_plan,
    laptop_sizes,
    phase_images,
    pinned_plan,
    running_operator,
    served,
    service_url,
    settled,
)
from phaseshift.lab.wait import wait_for
from phaseshift.lab.writer import Outcome, Writer

EVERY_COMPONENT = (
    "app", "postgres", "postgres-exporter", "redis", "redis-exporter", "rabbitmq", "nginx",
    "kafka", "cassandra",
)  # fmt: skip
STEADY_SECONDS = 20


def p95(outcomes: list[Outcome]) -> float | None:
    seconds = sorted(o.seconds for o in outcomes if o.kind == "acknowledged")
    if len(seconds) < 2:
        return seconds[0] if seconds else None
    return statistics.quantiles(seconds, n=20)[-1]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def run(cluster: local_cluster.LocalCluster, path: list[int], timeout: float) -> None:
    kubectl = local_cluster.kubectl_runner(cluster.kubeconfig)
    print("building and loading every phase's images ...", flush=True)
    local_cluster.load_images(cluster, phase_images(*EVERY_COMPONENT))
    namespace = f"bench-moves-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    sizes = laptop_sizes()
    rows = []
    try:
        with running_operator(cluster, namespace, Path(tempfile.mkdtemp())):
            apply_plan(kubectl, namespace, pinned_plan(path[0], **sizes))
            wait_for(
                lambda: settled(kubectl, namespace, path[0]),
                timeout=timeout, poll=1, what=f"phase {path[0]}",
            )  # fmt: skip
            url = service_url(kubectl, namespace, f"{PLAN}-app")
            served(url)
            with Writer(url) as writer:
                for current, target in itertools.pairwise(path):
                    time.sleep(STEADY_SECONDS)
                    started = time.monotonic()
                    steady = writer.between(started - STEADY_SECONDS, started)
                    apply_plan(kubectl, namespace, pinned_plan(target, **sizes))
                    status = wait_for(
                        lambda t=target: settled(kubectl, namespace, t),  # type: ignore[misc]
                        timeout=timeout, poll=1, what=f"phase {target}",
                    )  # fmt: skip
                    assert status is not None
                    during = writer.between(started, time.monotonic())
                    refused = [o.at for o in during if o.kind == "refused"]
                    rows.append(
                        (
                            f"{current} -> {target}",
                            status["history"][-1]["durationSeconds"],
                            sum(o.kind == "failed" for o in during),
                            len(refused),
                            refused[-1] - refused[0] if refused else 0.0,
                            p95(during),
                            p95(steady),
                            len(during),
                        )
                    )
                    print(f"{current} -> {target} done", flush=True)
                time.sleep(5)
            lost = writer.missing()
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    print()
    print("move     duration  writes  failed  refused  refused for  p95 during  p95 steady")
    for move, duration, failed, refusals, window, p95_during, p95_steady, writes in rows:
        print(
            f"{move:<7} {duration:>8.0f} s {writes:>7} {failed:>7} {refusals:>8} "
            f"{window:>10.1f} s {ms(p95_during):>11} {ms(p95_steady):>11}"
        )
    print(
        f"acknowledged writes: {len(writer.acknowledged)}; not read back afterwards: "
        f"{len(lost)}; failures by kind: {json.dumps(Counter(writer.failures))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bench-transitions")
    parser.add_argument("--path", default="1,2,3,4,3,2,1", help="phases, comma-separated")
    parser.add_argument("--timeout", type=float, default=1500)
    args = parser.parse_args()
    path = [int(p) for p in args.path.split(",")]
    existing = local_cluster.LocalCluster(args.name)
    if existing.is_running() and existing.has_real_node():
        run(existing, path, args.timeout)
        return
    cluster = local_cluster.up(args.name, nodes=0, real_node=True)
    try:
        run(cluster, path, args.timeout)
    finally:
        local_cluster.down(args.name)


if __name__ == "__main__":
    main()
