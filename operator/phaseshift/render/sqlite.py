"""Phase 1's database: SQLite in a file on a PersistentVolumeClaim."""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import Database
from phaseshift.render import components
from phaseshift.render.scope import Scope

SUFFIX = "sqlite"
MOUNT_PATH = "/data"
DATABASE_URL = "sqlite:////data/app.db"


def claim_name(scope: Scope) -> str:
    return scope.name(SUFFIX)


def volume(scope: Scope, *, read_only: bool = False) -> dict[str, Any]:
    return {
        "name": "sqlite",
        "persistentVolumeClaim": {"claimName": claim_name(scope), "readOnly": read_only},
    }


def claim(scope: Scope) -> dict[str, Any]:
    # No ownerReference: deleting the plan must never delete its data.
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": scope.metadata(SUFFIX, "database", stateful=True, owned=False),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": components.storage(scope, "sqlite")}},
        },
    }


def objects(scope: Scope) -> list[dict[str, Any]]:
    return [claim(scope)] if scope.catalog.database is Database.SQLITE else []
