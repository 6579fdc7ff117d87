"""The monolith of phases 1-3 and the deploy strategy of each phase.

Phase 1 runs one replica with Recreate: its SQLite volume can be mounted by one node.
Phase 2 runs a blue-green pair behind a Service that selects the live colour; the idle
colour is scaled to zero, or runs the context's second track (see RenderContext).
Phase 3 runs a rolling Deployment sized by an HPA, with a PDB and topology spread.
"""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Database
from phaseshift.render import sqlite
from phaseshift.render.autoscaling import hpa, pdb
from phaseshift.render.scope import LABEL_COLOUR, Scope
from phaseshift.render.service import entry_service
from phaseshift.render.sizing import app_replicas, autoscale
from phaseshift.render.workload import app_container, app_deployment, recreate, rolling

COMPONENT = "app"
SUFFIX = "app"
SERVICE = "app"


def _service(scope: Scope) -> dict[str, Any]:
    extra = {LABEL_COLOUR: scope.ctx.live_colour} if scope.catalog.colours else {}
    return entry_service(scope, scope.selector_by_service(SERVICE, **extra))


def _single(scope: Scope) -> list[dict[str, Any]]:
    on_sqlite = scope.catalog.database is Database.SQLITE
    mounts = [{"name": "sqlite", "mountPath": sqlite.MOUNT_PATH}] if on_sqlite else []
    container = app_container(scope, role="monolith", image=scope.image("app"), mounts=mounts)
    return [
        app_deployment(
            scope,
            suffix=SUFFIX,
            component=COMPONENT,
            container=container,
            replicas=app_replicas(scope),
            strategy=recreate(),
            service=SERVICE,
            volumes=[sqlite.volume(scope)] if on_sqlite else [],
        )
    ]


def _blue_green(scope: Scope) -> list[dict[str, Any]]:
    ctx = scope.ctx
    replicas = app_replicas(scope)
    deployments = []
    for colour in ("blue", "green"):
        live = colour == ctx.live_colour
        # The idle colour runs the second track when there is one, else idles at zero.
        runs = scope if live or ctx.next_app is None else scope.running(ctx.next_app)
        deployments.append(
            app_deployment(
                runs,
                suffix=f"{SUFFIX}-{colour}",
                component=COMPONENT,
                container=app_container(runs, role="monolith", image=runs.image("app")),
                replicas=replicas if live or ctx.next_app is not None else 0,
                strategy=rolling(max_surge=1),
                service=SERVICE,
                extra_labels={LABEL_COLOUR: colour},
            )
        )
    return deployments


def _horizontal(scope: Scope) -> list[dict[str, Any]]:
    bounds = autoscale(scope)
    assert bounds is not None, "phase 3 always autoscales"
    deployment = app_deployment(
        scope,
        suffix=SUFFIX,
        component=COMPONENT,
        container=app_container(scope, role="monolith", image=scope.image("app")),
        replicas=None,
        strategy=rolling(),
        service=SERVICE,
        spread=True,
    )
    return [
        deployment,
        hpa(scope, SUFFIX, COMPONENT, bounds),
        pdb(scope, SUFFIX, COMPONENT, scope.selector(SUFFIX)),
    ]


def objects(scope: Scope) -> list[dict[str, Any]]:
    builders = {1: _single, 2: _blue_green, 3: _horizontal}
    if scope.phase not in builders:
        return []
    return [_service(scope), *builders[scope.phase](scope)]
