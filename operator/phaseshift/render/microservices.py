"""Phase 4: user-service, data-service and the API gateway replace the monolith.

Each service runs the same image in its own APP_ROLE, sized by its own HPA, with a
canary Deployment beside the stable one. The Service selects both tracks, so traffic
reaches the canary in proportion to its replicas; it has none unless a canary rollout is
in progress (RenderContext.next_app), when it is sized for the context's weight.
"""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Application
from phaseshift.render.autoscaling import hpa, pdb
from phaseshift.render.scope import LABEL_TRACK, Scope
from phaseshift.render.service import entry_service, port, service
from phaseshift.render.sizing import autoscale, canary_replicas
from phaseshift.render.workload import app_container, app_deployment, rolling

SERVICES = ("user-service", "data-service", "gateway")


def _service_objects(scope: Scope, role: str) -> list[dict[str, Any]]:
    bounds = autoscale(scope)
    assert bounds is not None, "phase 4 always autoscales"
    next_app = scope.ctx.next_app
    canary_scope = scope if next_app is None else scope.running(next_app)
    stable = app_deployment(
        scope,
        suffix=role,
        component=role,
        container=app_container(scope, role=role, image=scope.service_image(role)),
        replicas=None,
        strategy=rolling(),
        service=role,
        extra_labels={LABEL_TRACK: "stable"},
        spread=True,
    )
    canary = app_deployment(
        canary_scope,
        suffix=f"{role}-canary",
        component=role,
        container=app_container(canary_scope, role=role, image=canary_scope.service_image(role)),
        replicas=(
            0
            if next_app is None
            else canary_replicas(
                max(bounds.min_replicas, scope.ctx.stable_replicas.get(role, 0)),
                scope.ctx.canary_weight,
            )
        ),
        strategy=rolling(),
        service=role,
        extra_labels={LABEL_TRACK: "canary"},
    )
    return [
        service(scope, role, role, scope.selector_by_service(role), [port("http", 80, "http")]),
        stable,
        canary,
        hpa(scope, role, role, bounds),
        pdb(scope, role, role, scope.selector(role, **{LABEL_TRACK: "stable"})),
    ]


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.application is not Application.MICROSERVICES:
        return []
    entry = entry_service(scope, scope.selector_by_service("gateway"))
    return [entry, *(obj for role in SERVICES for obj in _service_objects(scope, role))]
