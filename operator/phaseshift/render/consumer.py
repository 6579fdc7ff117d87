"""Consumers of the app's event stream (phase 4), the same image in the consumer role."""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Stream
from phaseshift.render import components
from phaseshift.render.scope import Scope
from phaseshift.render.workload import app_container, app_deployment, rolling

COMPONENT = "consumer"
SUFFIX = "event-consumer"


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.stream is not Stream.KAFKA:
        return []
    container = app_container(
        scope,
        role="consumer",
        image=scope.image("app"),
        command=["python", "-m", "sample_app", "consume"],
        serves_http=False,
        size=components.size(scope, "consumer"),
    )
    return [
        app_deployment(
            scope,
            suffix=SUFFIX,
            component=COMPONENT,
            container=container,
            replicas=components.consumer_replicas(scope),
            strategy=rolling(),
            service=None,
            spread=True,
        )
    ]
