"""Settings read from the environment the operator's renderer sets.

Nothing else configures the service: the same image runs every phase, and the
phase is expressed only through which of these variables are present.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("monolith", "user-service", "data-service", "gateway", "worker", "consumer")
DEFAULT_STATIC_DIR = Path(__file__).parent / "static"
CQL_PORT = 9042
DEFAULT_KEYSPACE = "phaseshift"
# The keyspace is written into CQL statements, so only an unquoted CQL name (at most
# 48 characters, Cassandra's limit) is accepted.
KEYSPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


class ConfigError(ValueError):
    """The environment does not describe a runnable service."""


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def contact_points(value: str | None) -> tuple[tuple[str, int], ...]:
    """CASSANDRA_CONTACT_POINTS: comma-separated host[:port] (port 9042 by default);
    an IPv6 address with a port is written [addr]:port."""
    points = []
    for part in _split(value):
        host, port = part, str(CQL_PORT)
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.removeprefix(":") or port
        elif part.count(":") == 1:
            host, port = part.split(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"CASSANDRA_CONTACT_POINTS: {part!r} is not host[:port]")
        points.append((host, int(port)))
    return tuple(points)


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    plan: str = "local"
    role: str = "monolith"
    database_url: str = "sqlite:///phaseshift-sample.db"
    read_replica_urls: tuple[str, ...] = ()
    shard_urls: tuple[str, ...] = ()
    redis_url: str | None = None
    redis_cluster: bool = False
    cache_ttl_seconds: float = 30.0
    # The cache's in-process level in front of Redis: how long an entry may be served
    # from process memory (0 turns the level off) and its bounds (least recently used
    # first out).
    cache_local_ttl_seconds: float = 1.0
    cache_local_max_entries: int = 10_000
    cache_local_max_bytes: int = 32 * 1024 * 1024
    queue_url: str | None = None
    kafka_bootstrap: tuple[str, ...] = ()
    # Phase 4's activity feed (the consumer writes it, the data service reads it); none
    # when empty.
    cassandra_contact_points: tuple[tuple[str, int], ...] = ()
    cassandra_keyspace: str = DEFAULT_KEYSPACE
    cassandra_replication_factor: int = 1
    user_service_url: str | None = None
    data_service_url: str | None = None
    static_dir: Path = field(default=DEFAULT_STATIC_DIR)
    port: int = 8080
    # How long after a write the writer's own reads stay on the primary. Replication
    # on a healthy cluster lags by milliseconds; a few seconds covers a busy one.
    read_your_writes_seconds: float = 5.0
    # Window over which distinct users count as "active".
    active_user_window_seconds: float = 300.0

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        role = env.get("APP_ROLE", "monolith") or "monolith"
        if role not in ROLES:
            raise ConfigError(f"APP_ROLE must be one of {', '.join(ROLES)}, got {role!r}")
        database_url = env.get("DATABASE_URL") or "sqlite:///phaseshift-sample.db"
        if not database_url.startswith(("sqlite:", "postgresql://", "postgres://")):
            raise ConfigError("DATABASE_URL must be sqlite:///PATH or postgresql://...")
        replicas = _split(env.get("READ_REPLICA_URLS"))
        shards = _split(env.get("DATABASE_SHARD_URLS"))
        for url in (*replicas, *shards):
            if not url.startswith(("postgresql://", "postgres://")):
                raise ConfigError(f"replica and shard URLs must be postgresql://, got {url!r}")
        if (replicas or shards) and database_url.startswith("sqlite:"):
            raise ConfigError("read replicas and shards need a postgresql:// DATABASE_URL")
        port_raw = env.get("PORT") or "8080"
        try:
            port = int(port_raw)
        except ValueError as exc:
            raise ConfigError(f"PORT must be an integer, got {port_raw!r}") from exc
        keyspace = env.get("CASSANDRA_KEYSPACE") or DEFAULT_KEYSPACE
        if not KEYSPACE_RE.match(keyspace):
            raise ConfigError(
                f"CASSANDRA_KEYSPACE must be a CQL name (letters, digits, _), got {keyspace!r}"
            )
        replication = _non_negative_int(env, "CASSANDRA_REPLICATION_FACTOR", 1)
        if replication < 1:
            raise ConfigError("CASSANDRA_REPLICATION_FACTOR must be at least 1")
        if role == "gateway" and not (env.get("USER_SERVICE_URL") and env.get("DATA_SERVICE_URL")):
            raise ConfigError("the gateway role needs USER_SERVICE_URL and DATA_SERVICE_URL")
        return cls(
            plan=env.get("PHASESHIFT_PLAN") or "local",
            role=role,
            database_url=database_url,
            read_replica_urls=replicas,
            shard_urls=shards,
            redis_url=env.get("REDIS_URL") or None,
            redis_cluster=_truthy(env.get("REDIS_CLUSTER")),
            cache_ttl_seconds=_positive_float(env, "CACHE_TTL_SECONDS", 30.0),
            cache_local_ttl_seconds=_positive_float(env, "CACHE_LOCAL_TTL_SECONDS", 1.0),
            cache_local_max_entries=_non_negative_int(env, "CACHE_LOCAL_MAX_ENTRIES", 10_000),
            cache_local_max_bytes=_non_negative_int(env, "CACHE_LOCAL_MAX_BYTES", 32 * 1024 * 1024),
            queue_url=env.get("QUEUE_URL") or None,
            kafka_bootstrap=_split(env.get("KAFKA_BOOTSTRAP")),
            cassandra_contact_points=contact_points(env.get("CASSANDRA_CONTACT_POINTS")),
            cassandra_keyspace=keyspace,
            cassandra_replication_factor=replication,
            user_service_url=(env.get("USER_SERVICE_URL") or "").rstrip("/") or None,
            data_service_url=(env.get("DATA_SERVICE_URL") or "").rstrip("/") or None,
            static_dir=Path(env.get("STATIC_DIR") or DEFAULT_STATIC_DIR),
            port=port,
            read_your_writes_seconds=_positive_float(env, "READ_YOUR_WRITES_SECONDS", 5.0),
            active_user_window_seconds=_positive_float(env, "ACTIVE_USER_WINDOW_SECONDS", 300.0),
        )
