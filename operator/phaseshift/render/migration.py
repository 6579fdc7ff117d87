"""The 1 -> 2 data migration: a Job copying the SQLite file into the new primary, and
the Job that opens the SQLite file to writes again when the transition is abandoned.

The migration freezes the phase-1 app's writes before its final pass (`migrate
--freeze-source`, see sample_app.migrate), so it mounts the SQLite volume read-write.
Each transition runs Jobs of its own (the attempt in their names): a Job left from an
abandoned attempt must not count as this one's migration."""

from __future__ import annotations

from typing import Any

from phaseshift.render import credentials as cred
from phaseshift.render import sqlite
from phaseshift.render.pods import (
    APP_UID,
    container_security,
    empty_dir,
    env_from_secret,
    pod_security,
    pod_template,
)
from phaseshift.render.pods import resources as container_resources
from phaseshift.render.scope import Scope
from phaseshift.render.sizing import app_size

SUFFIX = "migrate-sqlite"
THAW_SUFFIX = "thaw-sqlite"
COMPONENT = "database"
# Finished Jobs stay for their logs (`kubectl logs job/...`): a day for a migration,
# an hour for a thaw, whose outcome the plan's Events say as well.
MIGRATION_TTL_SECONDS = 86_400
THAW_TTL_SECONDS = 3600


def migration_job(scope: Scope, attempt: str) -> dict[str, Any]:
    command = ["migrate", "--freeze-source", "--from", sqlite.DATABASE_URL]
    command += ["--to", "$(TARGET_DATABASE_URL)"]
    env = [env_from_secret("TARGET_DATABASE_URL", cred.secret_name(scope), cred.PRIMARY_URL_KEY)]
    job = _sqlite_job(scope, f"{SUFFIX}-{attempt}", command, env)
    job["spec"]["ttlSecondsAfterFinished"] = MIGRATION_TTL_SECONDS
    return job


def thaw_job(scope: Scope, attempt: str) -> dict[str, Any]:
    command = ["migrate", "--thaw", "--from", sqlite.DATABASE_URL]
    job = _sqlite_job(scope, f"{THAW_SUFFIX}-{attempt}", command, [])
    job["spec"]["ttlSecondsAfterFinished"] = THAW_TTL_SECONDS
    return job


def _sqlite_job(
    scope: Scope, suffix: str, command: list[str], env: list[dict[str, Any]]
) -> dict[str, Any]:
    """A run of `python -m sample_app <command>` beside phase 1's SQLite volume."""
    container = {
        "name": "migrate",
        "image": scope.image("app"),
        "command": ["python", "-m", "sample_app", *command],
        "env": env,
        "resources": container_resources(app_size(scope)),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "sqlite", "mountPath": sqlite.MOUNT_PATH},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    # The SQLite volume is ReadWriteOnce and the phase-1 app may still hold it, so the
    # Job prefers that app's node (required would strand it once the app is gone).
    affinity = {
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": scope.selector("app")},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }
    spec = {
        "securityContext": pod_security(APP_UID),
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "affinity": affinity,
        "containers": [container],
        "volumes": [sqlite.volume(scope), empty_dir("tmp")],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": scope.metadata(suffix, COMPONENT),
        "spec": {
            "backoffLimit": 3,
            "template": pod_template(
                scope,
                workload=suffix,
                component=COMPONENT,
                spec=spec,
                metrics_port=None,
                meshed=False,
            ),
        },
    }
