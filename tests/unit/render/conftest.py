"""Plans and rendering shortcuts shared by the renderer's tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from phaseshift.api import ScalePlan, parse_plan
from phaseshift.render import RenderContext, render_phase

PlanFactory = Callable[..., ScalePlan]
Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def make_plan() -> PlanFactory:
    def make(name: str = "shop", namespace: str = "team-a", **spec: Any) -> ScalePlan:
        return parse_plan(
            {
                "apiVersion": "phaseshift.dev/v1alpha1",
                "kind": "ScalePlan",
                "metadata": {"name": name, "namespace": namespace, "uid": "uid-" + name},
                "spec": spec,
            }
        )

    return make


@pytest.fixture
def render(make_plan: PlanFactory) -> Render:
    """render(phase, plan=None, **context) -> objects; the default plan is make_plan()."""

    def run(phase: int, plan: ScalePlan | None = None, **context: Any) -> list[dict[str, Any]]:
        ctx = RenderContext(db_password=context.pop("db_password", "s3cret/pw"), **context)
        return render_phase(plan or make_plan(), phase, ctx)

    return run
