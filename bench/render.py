"""Benchmark: how fast the pure renderer turns plans into objects.

    .venv/bin/python bench/render.py [--plans 1000] [--repeat 200]

Prints the time to render each phase of one plan (median of --repeat runs; target for
phase 4: < 5 ms) and the time to render phase 4 of --plans distinct plans (target for
1,000 plans: < 5 s), which is what an operator resyncing every plan at once pays. It
prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

from phaseshift.api import ScalePlan, parse_plan
from phaseshift.render import RenderContext, render_phase


def _plan(name: str) -> ScalePlan:
    return parse_plan(
        {
            "apiVersion": "phaseshift.dev/v1alpha1",
            "kind": "ScalePlan",
            "metadata": {"name": name, "namespace": "bench", "uid": f"uid-{name}"},
            "spec": {"observability": {"serviceMonitor": True, "prometheusRule": True}},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    ctx = RenderContext(db_password="bench-password")

    plan = _plan("shop")
    print(f"one plan, median of {args.repeat} renders:")
    for phase in (1, 2, 3, 4):
        samples = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            objects = render_phase(plan, phase, ctx)
            samples.append(time.perf_counter() - start)
        median_ms = statistics.median(samples) * 1000
        target = "  (target < 5 ms)" if phase == 4 else ""
        print(f"  phase {phase}: {len(objects):3d} objects in {median_ms:.2f} ms{target}")

    plans = [_plan(f"shop-{i}") for i in range(args.plans)]
    start = time.perf_counter()
    count = sum(len(render_phase(p, 4, ctx)) for p in plans)
    elapsed = time.perf_counter() - start
    print(
        f"phase 4 of {args.plans} distinct plans: {count} objects in {elapsed:.2f} s "
        f"({elapsed / args.plans * 1000:.2f} ms per plan)  (target for 1000 plans < 5 s)"
    )


if __name__ == "__main__":
    main()
