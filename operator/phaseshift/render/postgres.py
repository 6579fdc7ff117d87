"""PostgreSQL from phase 2: a primary, streaming read replicas, and optional shards.

The pods use the image only for its binaries (`postgres`, `initdb`, `pg_ctl`, `psql`,
`pg_basebackup`, `pg_isready` on PATH), never its entrypoint: an initContainer runs
`initdb` when the volume holds no database (with the password from the Secret), creates
the app's database and the replication role, and the server starts as
`postgres -D PGDATA` with postgresql.conf and pg_hba.conf from a ConfigMap. Replicas
clone the primary with `pg_basebackup -R` instead, which leaves standby.signal and
primary_conninfo behind, so the same command then starts a hot standby. Each replica
streams through a physical replication slot named after its pod, so the primary keeps
the WAL it has not received (up to a cap), and a replica whose data can no longer resume
(its slot lost or gone, or a primary initialised anew) clones the primary again. Shards are
independent primaries in one StatefulSet, one pod per shard, without replicas.
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
    env_from_pod,
    env_from_secret,
    exec_probe,
    pod_security,
    pod_template,
    resources,
)
from phaseshift.render.quantity import memory_bytes
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
EXPORTER_QUERIES = "exporter-queries.yaml"

_POSTGRESQL_CONF = f"""# Read through `postgres -c config_file=...`: the copies initdb and pg_basebackup leave
# in the data directory are not used (postgresql.auto.conf there still is).
listen_addresses = '*'
port = 5432
unix_socket_directories = '{SOCKETS}'
max_connections = {{max_connections}}
shared_buffers = {{shared_buffers}}MB
password_encryption = scram-sha-256
wal_level = replica
max_wal_senders = {{wal_senders}}
max_replication_slots = {{wal_senders}}
# Each replica streams through a physical slot named after its pod, which keeps the WAL
# it has not received yet, but at most this much: past it the slot is lost (wal_status
# 'lost'), the WAL goes, and the replica clones the primary again on its next start. A
# replica scaled away leaves its slot (and its volume, for scaling back up) behind; the
# slot pins at most this much WAL, and every slot pins the same WAL, so the primary
# keeps at most this much for all of them together.
max_slot_wal_keep_size = {{slot_wal_keep}}MB
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
# PostgreSQL's default max_wal_senders and max_replication_slots; never fewer.
MIN_WAL_SENDERS = 10
# max_slot_wal_keep_size: this share of the volume at most is WAL kept for replicas.
SLOT_WAL_SHARE = 4


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


def _postgres_scopes(scope: Scope) -> list[Scope]:
    """Every phase that runs PostgreSQL, whatever the plan's maxPhase: the settings sized
    from them take a restart to change, and a standby refuses to replay a primary whose
    value is higher than its own, so lowering maxPhase during a demotion (primary and
    replica restarting in no set order) must not lower them."""
    every = (Scope(scope.plan, number, scope.ctx) for number in PHASES)
    return [s for s in every if s.catalog.database.postgres]


def max_connections(scope: Scope) -> int:
    """max_connections for every phase the plan may reach, not only the scope's: it takes
    a restart to change, and a transition must not restart the database. Standbys need
    at least the primary's value, and share its configuration."""
    clients = max(_database_clients(s) for s in _postgres_scopes(scope))
    return max(MIN_CONNECTIONS, clients * APP_POOL_SIZE + CONNECTION_HEADROOM)


def wal_senders(scope: Scope) -> int:
    """max_wal_senders and max_replication_slots, for every phase (a restart to change,
    and standbys need the primary's value): a replica streams through
    one sender and one slot, and a clone takes a second sender while pg_basebackup copies.
    Twice the most replicas also leaves room for the slots of replicas scaled away: a
    primary holding more slots than max_replication_slots does not start."""
    most = max(read_replicas(s) for s in _postgres_scopes(scope))
    return max(MIN_WAL_SENDERS, 2 * most)


def slot_wal_keep_mb(scope: Scope) -> int:
    """max_slot_wal_keep_size: a quarter of the volume (the same in every phase)."""
    volume_mib = memory_bytes(components.storage(scope, "postgres")) // 2**20
    return max(64, volume_mib // SLOT_WAL_SHARE)


def shared_buffers_mb(scope: Scope) -> int:
    smallest = min(
        components.memory_request_mib(components.size(scope, key))
        for key in ("postgres", "postgres-replica")
    )
    return max(16, min(MAX_SHARED_BUFFERS_MB, smallest // 4))


def postgresql_conf(scope: Scope) -> str:
    return _POSTGRESQL_CONF.format(
        max_connections=max_connections(scope),
        shared_buffers=shared_buffers_mb(scope),
        wal_senders=wal_senders(scope),
        slot_wal_keep=slot_wal_keep_mb(scope),
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

# A replica's start. Data that can resume streaming starts as a standby: the primary is
# the one it was cloned from (the same system identifier) and still holds the replica's
# slot with its WAL (wal_status not 'lost'). Otherwise (or with no data) the replica
# clones the primary again, through a new slot, with the same build-aside as initdb's. An
# unreachable primary decides nothing: the standby starts on the data it has and serves
# reads, streaming again once the primary is back.
_CLONE_SCRIPT = """set -eu
slot=$(printf '%s' "$POD_NAME" | tr -c 'a-z0-9' '_' | cut -c1-63)
on_primary() {{
  psql "host=$PRIMARY_HOST user={user} dbname=postgres connect_timeout=10" \\
    -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"
}}
if [ -s "$PGDATA/PG_VERSION" ]; then
  status=0
  state=$(on_primary "SELECT system_identifier || ' ' || coalesce((SELECT wal_status
    FROM pg_replication_slots WHERE slot_name = '$slot'), 'missing')
    FROM pg_control_system()") || status=$?
  if [ "$status" -eq 2 ]; then
    echo "primary unreachable; starting as a standby on the data present"
    exit 0
  fi
  [ "$status" -eq 0 ] || exit "$status"
  ours=$(LC_ALL=C pg_controldata "$PGDATA" | sed -n 's/^Database system identifier: *//p')
  theirs=${{state% *}}
  wal=${{state#* }}
  if [ "$theirs" = "$ours" ] && [ "$wal" != missing ] && [ "$wal" != lost ]; then
    echo "data directory present; resuming as a standby on slot $slot ($wal)"
    exit 0
  fi
  echo "data cannot resume (system $ours, primary $theirs, slot $slot $wal); cloning again"
fi
new="$PGDATA.new"
rm -rf "$PGDATA" "$new"
# A slot of this name left by an earlier copy holds none of the WAL this copy needs.
on_primary "SELECT pg_terminate_backend(active_pid, 10000) FROM pg_replication_slots
  WHERE slot_name = '$slot' AND active_pid IS NOT NULL" >/dev/null
on_primary "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
  WHERE slot_name = '$slot'" >/dev/null
on_primary "SELECT pg_create_physical_replication_slot('$slot', true)" >/dev/null
# application_name goes into primary_conninfo too: the primary's pg_stat_replication
# then names each standby after its slot.
pg_basebackup --host="$PRIMARY_HOST" --username={user} --dbname="application_name=$slot" \\
  --pgdata="$new" --wal-method=stream --slot="$slot" --write-recovery-conf --checkpoint=fast
mv "$new" "$PGDATA"
"""


def slot_name(pod: str) -> str:
    """The replication slot of the replica pod `pod`, as the clone script names it."""
    return "".join(c if c.isascii() and (c.islower() or c.isdigit()) else "_" for c in pod)[:63]


# Beside the exporter's own metrics (on a primary: each standby's byte lag in
# pg_stat_replication_pg_wal_lsn_diff by application_name, the standby's slot name; each
# slot's retained WAL in pg_replication_slots_pg_wal_lsn_diff), a standby's own view of
# its lag. Named pg_standby:
# newer exporters' replication collector exports pg_replication_lag_seconds itself, which
# a query of the same name would collide with.
EXPORTER_QUERIES_YAML = """pg_standby:
  query: |
    SELECT pg_is_in_recovery()::int AS is_replica,
      CASE WHEN NOT pg_is_in_recovery() THEN 0
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
        ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))
      END AS lag_seconds,
      coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)
        AS replay_lag_bytes,
      (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming
  master: true
  metrics:
    - is_replica:
        usage: GAUGE
        description: 1 on a standby, 0 on a primary
    - lag_seconds:
        usage: GAUGE
        description: >-
          Seconds since the primary committed the last transaction this standby replayed,
          0 when it has replayed all the WAL it received (an idle primary is no lag)
    - replay_lag_bytes:
        usage: GAUGE
        description: WAL this standby received but has not replayed yet, in bytes
    - streaming:
        usage: GAUGE
        description: 1 while this standby streams WAL from its primary
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
        "args": [
            f"--web.listen-address=:{EXPORTER_PORT}",
            f"--extend.query-path={CONFIG_DIR}/{EXPORTER_QUERIES}",
        ],
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
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
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
            env_from_pod("POD_NAME", "metadata.name"),
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
        annotations={
            ANNOTATION_CONFIG_HASH: content_hash(
                postgresql_conf(scope), PG_HBA_CONF, EXPORTER_QUERIES_YAML
            )
        },
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
        "data": {
            "postgresql.conf": postgresql_conf(scope),
            "pg_hba.conf": PG_HBA_CONF,
            EXPORTER_QUERIES: EXPORTER_QUERIES_YAML,
        },
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
