"""The 1 -> 2 data migration: a Job copying the SQLite file into the new primary."""

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
COMPONENT = "database"


def migration_job(scope: Scope) -> dict[str, Any]:
    container = {
        "name": "migrate",
        "image": scope.image("app"),
        "command": [
            "python",
            "-m",
            "sample_app",
            "migrate",
            "--from",
            sqlite.DATABASE_URL,
            "--to",
            "$(TARGET_DATABASE_URL)",
        ],
        "env": [
            env_from_secret("TARGET_DATABASE_URL", cred.secret_name(scope), cred.PRIMARY_URL_KEY)
        ],
        "resources": container_resources(app_size(scope)),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "sqlite", "mountPath": sqlite.MOUNT_PATH, "readOnly": True},
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
        "volumes": [sqlite.volume(scope, read_only=True), empty_dir("tmp")],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": scope.metadata(SUFFIX, COMPONENT),
        "spec": {
            "backoffLimit": 3,
            "template": pod_template(
                scope,
                workload=SUFFIX,
                component=COMPONENT,
                spec=spec,
                metrics_port=None,
                meshed=False,
            ),
        },
    }
