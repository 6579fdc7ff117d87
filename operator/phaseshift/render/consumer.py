"""Consumers of the app's event stream (phase 4), the same image in the consumer role."""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Stream
from phaseshift.render import components
from phaseshift.render.scope import Scope
from phaseshift.render.workload import role_deployment

COMPONENT = "consumer"
SUFFIX = "event-consumer"


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.catalog.stream is not Stream.KAFKA:
        return []
    return [
        role_deployment(
            scope,
            suffix=SUFFIX,
            component=COMPONENT,
            role="consumer",
            command=["python", "-m", "sample_app", "consume"],
            size=components.size(scope, "consumer"),
            replicas=components.consumer_replicas(scope),
        )
    ]
