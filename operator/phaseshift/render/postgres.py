"""PostgreSQL from phase 2: a primary, streaming read replicas, and optional shards.

The pods use the image only for its binaries (`postgres`, `initdb`, `pg_ctl`, `psql`,
`pg_basebackup`, `pg_isready` on PATH), never its entrypoint: an initContainer runs
`initdb` when the volume holds no database (with the password from the Secret), creates
the app's database and the replication role, and the server starts as
`postgres -D PGDATA` with postgresql.conf and pg_hba.conf from a ConfigMap. Replicas
clone the primary with `pg_basebackup -R` instead, which leaves standby.signal and
primary_conninfo behind, so the same command then starts a hot standby. Shards are
independent primaries in one StatefulSet, one pod per shard.
"""

from __future__ import annotations

import math
from typing import Any

from phaseshift.api import RolloutStrategy
from phaseshift.catalog import PHASES
from phaseshift.render import components
from phaseshift.render import credentials as cred
from phaseshift.render.encoding import content_hash
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
from phaseshift.render.sizing import app_replicas, autoscale, read_replicas, shards
from phaseshift.render.statefulset import data_statefulset
from phaseshift.render.workload import ANNOTATION_CONFIG_HASH

COMPONENT = "database"
PRIMARY = "postgres"
REPLICA = "postgres-replica"
SHARD = "postgres-shard"
PEERS = "postgres-hl"
CONFIG = "postgres-config"
POSTGRES_UID = 999  # the postgres user of the official Debian-based image
DATA = "/var/lib/postgresql/data"
# A directory below the mount point: a fresh volume's lost+found is no database.
PGDATA = f"{DATA}/pgdata"
CONFIG_DIR = "/etc/phaseshift/postgres"
SOCKETS = "/var/run/postgresql"
EXPORTER_PORT = 9187

_POSTGRESQL_CONF = f"""# Read through `postgres -c config_file=...`: the copies initdb and pg_basebackup leave
# in the data directory are not used (postgresql.auto.conf there still is).
listen_addresses = '*'
port = 5432
unix_socket_directories = '{SOCKETS}'
max_connections = {{max_connections}}
shared_buffers = {{shared_buffers}}MB
password_encryption = scram-sha-256
wal_level = replica
max_wal_senders = 10
# Keeps enough WAL for a replica that restarts to catch up without a new clone.
wal_keep_size = 512MB
hot_standby = on
log_destination = 'stderr'
logging_collector = off
log_timezone = 'UTC'
timezone = 'UTC'
datestyle = 'iso, mdy'
lc_messages = 'C'
lc_monetary = 'C'
lc_numeric = 'C'
lc_time = 'C'
default_text_search_config = 'pg_catalog.english'
"""

# Connections each app process opens to each PostgreSQL server at most: the pool size of
# sample_app's PostgresStore (one pool to the primary, one to the read replicas' Service,
# one to each shard).
APP_POOL_SIZE = 10
# Beside the app's pools: the exporter, the migration Job and a few admin sessions, and
# PostgreSQL's superuser_reserved_connections (3).
CONNECTION_HEADROOM = 10 + 3
# PostgreSQL's own default; the computed number never goes below it.
MIN_CONNECTIONS = 100
# shared_buffers: a quarter of the memory request, at most PostgreSQL's default 128MB.
MAX_SHARED_BUFFERS_MB = 128


def _surge(replicas: int) -> int:
    """Extra pods a rolling update (maxSurge 25%) runs beside `replicas`."""
    return math.ceil(replicas * 0.25)


def _database_clients(scope: Scope) -> int:
    """The most app processes holding a pool to PostgreSQL at once in the scope's phase:
    blue-green, both colours during a rollout; rolling, the HPA's maximum plus a rolling
    update's surge, and the workers; canary (the microservices), user-service and
    data-service at their HPA's maximum with as many canaries (a canary takes at most
    half the traffic), and the workers. The gateway and the event consumers hold no
    pool."""
    strategy = scope.catalog.strategy
    if strategy is RolloutStrategy.BLUE_GREEN:
        return 2 * app_replicas(scope)
    bounds = autoscale(scope)
    most = bounds.max_replicas if bounds is not None else app_replicas(scope)
    workers = components.worker_replicas(scope)
    workers += _surge(workers)
    if strategy is RolloutStrategy.ROLLING:
        return most + _surge(most) + workers
    return 2 * (2 * most) + workers


def max_connections(scope: Scope) -> int:
    """max_connections for every phase the plan may reach, not only the scope's: it takes
    a restart to change, and a transition must not restart the database. Standbys need
    at least the primary's value, and share its configuration."""
    top = max(scope.phase, scope.plan.spec.policy.max_phase)
    clients = max(
        _database_clients(Scope(scope.plan, number, scope.ctx))
        for number, phase in PHASES.items()
        if number <= top and phase.database.postgres
    )
    return max(MIN_CONNECTIONS, clients * APP_POOL_SIZE + CONNECTION_HEADROOM)


def shared_buffers_mb(scope: Scope) -> int:
    smallest = min(
        components.memory_request_mib(components.size(scope, key))
        for key in ("postgres", "postgres-replica")
    )
    return max(16, min(MAX_SHARED_BUFFERS_MB, smallest // 4))


def postgresql_conf(scope: Scope) -> str:
    return _POSTGRESQL_CONF.format(
        max_connections=max_connections(scope), shared_buffers=shared_buffers_mb(scope)
    )


PG_HBA_CONF = f"""# TYPE  DATABASE     USER         ADDRESS       METHOD
# The socket directory is private to the pod (an emptyDir).
local   all          all                        trust
host    replication  {cred.REPLICATION_USER}   all           scram-sha-256
host    all          all          all           scram-sha-256
"""

# The primary's (and each shard's) first start. The cluster is built beside PGDATA and
# moved into place only once complete, so a pod stopped half-way leaves nothing that
# could pass for a database: the next start builds it again.
_INITDB_SCRIPT = """set -eu
if [ -s "$PGDATA/PG_VERSION" ]; then
  echo "database cluster present in $PGDATA"
  exit 0
fi
new="$PGDATA.new"
rm -rf "$PGDATA" "$new"
(umask 077; printf '%s\\n' "$SUPERUSER_PASSWORD" > /tmp/pwfile)
initdb --pgdata="$new" --username={user} --pwfile=/tmp/pwfile --encoding=UTF8 --locale=C \\
  --auth-local=trust --auth-host=scram-sha-256
rm -f /tmp/pwfile
pg_ctl --pgdata="$new" --wait --options="-c listen_addresses='' -c unix_socket_directories=/tmp" start
psql --host=/tmp --username={user} --dbname=postgres -v ON_ERROR_STOP=1 \\
  --set=replication_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE DATABASE {database} OWNER {user};
CREATE ROLE {replication_user} WITH REPLICATION LOGIN PASSWORD :'replication_password';
SQL
pg_ctl --pgdata="$new" --wait --mode=fast stop
mv "$new" "$PGDATA"
"""

# A replica's first start: the same build-aside, from a copy of the primary.
_CLONE_SCRIPT = """set -eu
if [ -s "$PGDATA/PG_VERSION" ]; then
  echo "data directory present; starting as a standby"
  exit 0
fi
new="$PGDATA.new"
rm -rf "$PGDATA" "$new"
pg_basebackup --host="$PRIMARY_HOST" --username={user} --pgdata="$new" \\
  --wal-method=stream --write-recovery-conf --checkpoint=fast
mv "$new" "$PGDATA"
"""


def rw_host(scope: Scope) -> str:
    return scope.name("postgres-rw")


def ro_host(scope: Scope) -> str:
    return scope.name("postgres-ro")


def shard_hosts(scope: Scope) -> list[str]:
    statefulset = scope.name(SHARD)
    return [f"{statefulset}-{i}.{statefulset}" for i in range(shards(scope))]


def _data_mounts() -> list[dict[str, Any]]:
    return [
        {"name": "data", "mountPath": DATA},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def _postgres_container(scope: Scope, size_key: str) -> dict[str, Any]:
    ready = [
        "pg_isready",
        "--host=127.0.0.1",
        f"--username={cred.POSTGRES_USER}",
        f"--dbname={cred.POSTGRES_DB}",
    ]
    return {
        "name": "postgres",
        "image": scope.image("postgres"),
        "command": [
            "postgres",
            "-D",
            PGDATA,
            "-c",
            f"config_file={CONFIG_DIR}/postgresql.conf",
            "-c",
            f"hba_file={CONFIG_DIR}/pg_hba.conf",
        ],
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "readinessProbe": exec_probe(ready, period=5),
        "livenessProbe": exec_probe(ready, period=10, failures=6),
        # A fast shutdown (clients disconnected, a clean checkpoint) whatever stop signal
        # the image declares: postgres takes SIGTERM for a smart one, which waits for
        # every pooled connection to close.
        "lifecycle": {
            "preStop": {
                "exec": {
                    "command": ["pg_ctl", "stop", "-D", PGDATA, "-m", "fast", "-w", "-t", "50"]
                }
            }
        },
        "resources": resources(components.size(scope, size_key)),
        "securityContext": container_security(),
        "volumeMounts": [
            *_data_mounts(),
            {"name": "run", "mountPath": SOCKETS},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        ],
    }


def _exporter_container(scope: Scope) -> dict[str, Any]:
    secret = cred.secret_name(scope)
    return {
        "name": "exporter",
        "image": scope.image("postgres-exporter"),
        "command": ["/bin/postgres_exporter"],
        "args": [f"--web.listen-address=:{EXPORTER_PORT}"],
        # The exporter's own settings (not an image's convention).
        "env": [
            {
                "name": "DATA_SOURCE_URI",
                "value": f"127.0.0.1:5432/{cred.POSTGRES_DB}?sslmode=disable",
            },
            {"name": "DATA_SOURCE_USER", "value": cred.POSTGRES_USER},
            env_from_secret("DATA_SOURCE_PASS", secret, cred.PASSWORD_KEY),
        ],
        "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT}],
        "resources": resources(components.size(scope, "exporter")),
        "securityContext": container_security(),
    }


def initdb_script() -> str:
    return _INITDB_SCRIPT.format(
        user=cred.POSTGRES_USER,
        database=cred.POSTGRES_DB,
        replication_user=cred.REPLICATION_USER,
    )


def clone_script() -> str:
    return _CLONE_SCRIPT.format(user=cred.REPLICATION_USER)


def _initdb_container(scope: Scope, size_key: str) -> dict[str, Any]:
    secret = cred.secret_name(scope)
    return {
        "name": "initdb",
        "image": scope.image("postgres"),
        "command": ["sh", "-c", initdb_script()],
        "env": [
            {"name": "PGDATA", "value": PGDATA},
            env_from_secret("SUPERUSER_PASSWORD", secret, cred.PASSWORD_KEY),
            env_from_secret("REPLICATION_PASSWORD", secret, cred.REPLICATION_KEY),
        ],
        "resources": resources(components.size(scope, size_key)),
        "securityContext": container_security(),
        "volumeMounts": _data_mounts(),
    }


def _clone_container(scope: Scope, size_key: str) -> dict[str, Any]:
    return {
        "name": "clone-primary",
        "image": scope.image("postgres"),
        "command": ["sh", "-c", clone_script()],
        "env": [
            {"name": "PGDATA", "value": PGDATA},
            {"name": "PRIMARY_HOST", "value": rw_host(scope)},
            env_from_secret("PGPASSWORD", cred.secret_name(scope), cred.REPLICATION_KEY),
        ],
        "resources": resources(components.size(scope, size_key)),
        "securityContext": container_security(),
        "volumeMounts": _data_mounts(),
    }


def _statefulset(
    scope: Scope, suffix: str, replicas: int, *, clone: bool, governing: str
) -> dict[str, Any]:
    size_key = "postgres-replica" if suffix == REPLICA else "postgres"
    init = _clone_container(scope, size_key) if clone else _initdb_container(scope, size_key)
    spec: dict[str, Any] = {
        "securityContext": pod_security(POSTGRES_UID),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
        "initContainers": [init],
        "containers": [_postgres_container(scope, size_key), _exporter_container(scope)],
        "volumes": [
            empty_dir("run"),
            empty_dir("tmp"),
            {"name": "config", "configMap": {"name": scope.name(CONFIG)}},
        ],
    }
    template = pod_template(
        scope,
        workload=suffix,
        component=COMPONENT,
        spec=spec,
        metrics_port=EXPORTER_PORT,
        meshed=False,
        extra_labels={LABEL_SERVICE: "postgres"} if governing == PEERS else None,
        annotations={ANNOTATION_CONFIG_HASH: content_hash(postgresql_conf(scope), PG_HBA_CONF)},
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
        storage=components.storage(scope, "postgres"),
    )


def _config(scope: Scope) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": scope.metadata(CONFIG, COMPONENT),
        "data": {"postgresql.conf": postgresql_conf(scope), "pg_hba.conf": PG_HBA_CONF},
    }


def objects(scope: Scope) -> list[dict[str, Any]]:
    if not scope.catalog.database.postgres:
        return []
    pg = [port("postgres", 5432)]
    result = [
        cred.credentials_secret(scope, rw_host(scope)),
        _config(scope),
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
