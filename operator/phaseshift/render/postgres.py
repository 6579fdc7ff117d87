"""PostgreSQL from phase 2: a primary, streaming read replicas, and optional shards.

Replicas clone the primary with `pg_basebackup -R` in an initContainer, which leaves a
standby.signal and primary_conninfo behind, so the same postgres image then starts as a
hot standby. Shards are independent primaries in one StatefulSet, one pod per shard.
"""

from __future__ import annotations

from typing import Any

from phaseshift.catalog import COMPONENT_SIZES, STORAGE
from phaseshift.render import credentials as cred
from phaseshift.render.pods import (
    container_security,
    empty_dir,
    env_from_secret,
    exec_probe,
    pod_security,
    pod_template,
    resources,
)
from phaseshift.render.scope import LABEL_SERVICE, Scope
from phaseshift.render.service import port, service
from phaseshift.render.sizing import read_replicas, shards
from phaseshift.render.statefulset import data_statefulset

COMPONENT = "database"
PRIMARY = "postgres"
REPLICA = "postgres-replica"
SHARD = "postgres-shard"
PEERS = "postgres-hl"
POSTGRES_UID = 999  # the postgres user of the official Debian-based image
PGDATA = "/var/lib/postgresql/data/pgdata"
EXPORTER_PORT = 9187

_INIT_SCRIPT = """#!/bin/sh
# Runs once, when initdb creates the primary: a role for replicas to clone and stream with.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE {user} WITH REPLICATION LOGIN PASSWORD '$REPLICATION_PASSWORD';
SQL
echo "host replication {user} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
"""

_CLONE_SCRIPT = """set -eu
if [ -s "$PGDATA/PG_VERSION" ]; then
  echo "data directory present; starting as a standby"
  exit 0
fi
# A clone interrupted half-way leaves a directory pg_basebackup refuses to reuse.
rm -rf "$PGDATA"
exec pg_basebackup --host="$PRIMARY_HOST" --username={user} --pgdata="$PGDATA" \\
  --wal-method=stream --write-recovery-conf --checkpoint=fast
"""


def rw_host(scope: Scope) -> str:
    return scope.name("postgres-rw")


def ro_host(scope: Scope) -> str:
    return scope.name("postgres-ro")


def shard_hosts(scope: Scope) -> list[str]:
    statefulset = scope.name(SHARD)
    return [f"{statefulset}-{i}.{statefulset}" for i in range(shards(scope))]


def _postgres_env(scope: Scope) -> list[dict[str, Any]]:
    secret = cred.secret_name(scope)
    return [
        {"name": "POSTGRES_USER", "value": cred.POSTGRES_USER},
        {"name": "POSTGRES_DB", "value": cred.POSTGRES_DB},
        env_from_secret("POSTGRES_PASSWORD", secret, cred.PASSWORD_KEY),
        env_from_secret("REPLICATION_PASSWORD", secret, cred.REPLICATION_KEY),
        {"name": "PGDATA", "value": PGDATA},
    ]


def _postgres_container(scope: Scope) -> dict[str, Any]:
    ready = [
        "pg_isready",
        "--host=127.0.0.1",
        f"--username={cred.POSTGRES_USER}",
        f"--dbname={cred.POSTGRES_DB}",
    ]
    return {
        "name": "postgres",
        "image": scope.image("postgres"),
        "env": _postgres_env(scope),
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "readinessProbe": exec_probe(ready, period=5),
        "livenessProbe": exec_probe(ready, period=10, failures=6),
        "resources": resources(COMPONENT_SIZES["postgres"]),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
        ],
    }


def _exporter_container(scope: Scope) -> dict[str, Any]:
    secret = cred.secret_name(scope)
    return {
        "name": "exporter",
        "image": scope.image("postgres-exporter"),
        "env": [
            {
                "name": "DATA_SOURCE_URI",
                "value": f"127.0.0.1:5432/{cred.POSTGRES_DB}?sslmode=disable",
            },
            {"name": "DATA_SOURCE_USER", "value": cred.POSTGRES_USER},
            env_from_secret("DATA_SOURCE_PASS", secret, cred.PASSWORD_KEY),
        ],
        "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT}],
        "resources": resources(COMPONENT_SIZES["exporter"]),
        "securityContext": container_security(),
    }


def _clone_container(scope: Scope) -> dict[str, Any]:
    return {
        "name": "clone-primary",
        "image": scope.image("postgres"),
        "command": ["sh", "-c", _CLONE_SCRIPT.format(user=cred.REPLICATION_USER)],
        "env": [
            {"name": "PGDATA", "value": PGDATA},
            {"name": "PRIMARY_HOST", "value": rw_host(scope)},
            env_from_secret("PGPASSWORD", cred.secret_name(scope), cred.REPLICATION_KEY),
        ],
        "resources": resources(COMPONENT_SIZES["postgres"]),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _statefulset(
    scope: Scope, suffix: str, replicas: int, *, clone: bool, governing: str
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "securityContext": pod_security(POSTGRES_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
        "containers": [_postgres_container(scope), _exporter_container(scope)],
        "volumes": [
            empty_dir("run"),
            empty_dir("tmp"),
            {
                "name": "init",
                "configMap": {"name": scope.name("postgres-init"), "defaultMode": 0o555},
            },
        ],
    }
    if clone:
        spec["initContainers"] = [_clone_container(scope)]
    template = pod_template(
        scope,
        workload=suffix,
        component=COMPONENT,
        spec=spec,
        metrics_port=EXPORTER_PORT,
        meshed=False,
        extra_labels={LABEL_SERVICE: "postgres"} if governing == PEERS else None,
    )
    return data_statefulset(
        scope,
        suffix=suffix,
        component=COMPONENT,
        replicas=replicas,
        service_name=scope.name(governing),
        # Shards are independent primaries; a primary and its replicas start in order.
        pod_management="Parallel" if suffix == SHARD else "OrderedReady",
        template=template,
        storage=STORAGE["postgres"],
    )


def _init_configmap(scope: Scope) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": scope.metadata("postgres-init", COMPONENT),
        "data": {"10-replication.sh": _INIT_SCRIPT.format(user=cred.REPLICATION_USER)},
    }


def objects(scope: Scope) -> list[dict[str, Any]]:
    if scope.phase < 2:
        return []
    pg = [port("postgres", 5432)]
    result = [
        cred.credentials_secret(scope, rw_host(scope)),
        _init_configmap(scope),
        service(scope, PEERS, COMPONENT, scope.selector_by_service("postgres"), pg, headless=True),
        service(scope, "postgres-rw", COMPONENT, scope.selector(PRIMARY), pg),
        service(scope, "postgres-ro", COMPONENT, scope.selector(REPLICA), pg),
        _statefulset(scope, PRIMARY, 1, clone=False, governing=PEERS),
        _statefulset(scope, REPLICA, read_replicas(scope), clone=True, governing=PEERS),
    ]
    count = shards(scope)
    if count:
        result.insert(5, service(scope, SHARD, COMPONENT, scope.selector(SHARD), pg, headless=True))
        result.append(_statefulset(scope, SHARD, count, clone=False, governing=SHARD))
    return result
