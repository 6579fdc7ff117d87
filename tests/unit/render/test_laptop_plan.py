"""examples/laptop.yaml fits one small node in every phase: the requests of everything
a phase runs, with the largest Job it starts and a rollout's second track, stay within
1.6 CPU and 6 GiB (a 2-core node also runs CoreDNS and metrics-server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from phaseshift.api import DEFAULT_IMAGE, App, parse_plan
from phaseshift.render import RenderContext, render_migration_job, render_phase, resource_totals
from phaseshift.render.totals import pod_requests

LAPTOP = Path(__file__).resolve().parents[3] / "examples" / "laptop.yaml"
CPU_BUDGET = 1600  # millicores
MEMORY_BUDGET = 6 * 2**30

# The next release during a rollout: phase 2's idle colour, phase 4's canaries.
NEXT = App(image="ghcr.io/phaseshift/sample-app:0.1.1")


def _plan():
    return parse_plan(yaml.safe_load(LAPTOP.read_text()))


def _largest_job(objects: list[dict[str, Any]]) -> tuple[int, int]:
    jobs = [pod_requests(o["spec"]["template"]["spec"]) for o in objects if o["kind"] == "Job"]
    return max(jobs, default=(0, 0))


def _peak(phase: int, ctx: RenderContext) -> tuple[int, int]:
    plan = _plan()
    objects = render_phase(plan, phase, ctx)
    if phase == 2:
        objects.append(render_migration_job(plan, ctx, "attempt1"))
    cpu, memory = resource_totals(objects)
    job_cpu, job_memory = _largest_job(objects)
    return cpu + job_cpu, memory + job_memory


@pytest.mark.parametrize("phase", [1, 2, 3, 4])
def test_every_phase_fits_the_budget(phase: int) -> None:
    steady = resource_totals(render_phase(_plan(), phase, RenderContext(db_password="pw")))
    peak = _peak(phase, RenderContext(db_password="pw"))
    rollout = _peak(phase, RenderContext(db_password="pw", next_app=NEXT, canary_weight=50))
    for cpu, memory in (steady, peak, rollout):
        assert cpu <= CPU_BUDGET, f"phase {phase}: {cpu}m CPU requested"
        assert memory <= MEMORY_BUDGET, f"phase {phase}: {memory / 2**30:.2f} GiB requested"


def test_the_laptop_keeps_every_tier_of_every_phase() -> None:
    kinds = {
        phase: {
            (o["kind"], o["metadata"]["name"])
            for o in render_phase(_plan(), phase, RenderContext(db_password="pw"))
        }
        for phase in (1, 2, 3, 4)
    }
    assert ("StatefulSet", "shop-postgres-replica") in kinds[2]
    assert ("StatefulSet", "shop-redis-cluster") in kinds[3]
    assert {
        ("StatefulSet", f"shop-{tier}") for tier in ("kafka", "cassandra", "rabbitmq")
    } <= kinds[4]
    assert _plan().spec.app.image == DEFAULT_IMAGE


def test_limits_are_at_least_the_requests() -> None:
    from phaseshift.render.quantity import parse_quantity

    for phase in (1, 2, 3, 4):
        for obj in render_phase(_plan(), phase, RenderContext(db_password="pw")):
            if obj["kind"] not in ("Deployment", "StatefulSet", "Job"):
                continue
            spec = obj["spec"]["template"]["spec"]
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                resources = container["resources"]
                for key in ("cpu", "memory"):
                    request = parse_quantity(resources["requests"][key])
                    assert request <= parse_quantity(resources["limits"][key]), (
                        phase,
                        obj["metadata"]["name"],
                        container["name"],
                        key,
                    )
