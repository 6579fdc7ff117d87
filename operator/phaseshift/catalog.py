"""The four phases of the seed as data: what each phase runs, and its default sizes.

The README's phase table (`catalog_markdown_table`) and the renderer both read this
module, so the documented architecture and the objects applied cannot drift apart.
Every number here is a default; a plan's `spec.overrides` wins over it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from phaseshift.api import DEFAULT_IMAGE, DataTier, RolloutStrategy

# Pinned default image per component, at the major versions tested here: the local images
# are built from Debian bookworm's packages (PostgreSQL 15, Redis 7.0, RabbitMQ 3.10,
# nginx 1.22, postgres-exporter 0.11, redis-exporter 1.45), Kafka 4.1.1
# (tools/versions.env) and Cassandra 5.0. Pods use an image only for its binaries (every
# container has an explicit command), so any image with the same binaries at the same
# paths runs the same. `spec.overrides[].images` replaces any of them by the same key, and
# the operator's image table (phaseshift.imagemap) replaces them operator-wide. Tags are
# pinned so a phase renders the same objects tomorrow.
IMAGES: dict[str, str] = {
    "app": DEFAULT_IMAGE,
    "postgres": "postgres:15.10",
    "postgres-exporter": "quay.io/prometheuscommunity/postgres-exporter:v0.11.1",
    "redis": "redis:7.0.15",
    "redis-exporter": "oliver006/redis_exporter:v1.45.0",
    "rabbitmq": "rabbitmq:3.10.25-management",
    "kafka": "apache/kafka:4.1.1",
    "cassandra": "cassandra:5.0.2",
    "nginx": "nginx:1.22.1",
}


@dataclass(frozen=True)
class Size:
    """Requests and limits of one container."""

    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str


@dataclass(frozen=True)
class Autoscale:
    min_replicas: int
    max_replicas: int
    target_cpu_percent: int


# What a phase runs, as the code asks it: the renderer, transitions and rollouts test
# these features, never a phase's number. `Described` says the same in words, for the
# README's table.


class Application(Enum):
    MONOLITH = "monolith"
    VERTICAL_MONOLITH = "one larger monolith"  # scaled up: never smaller than the catalog's
    HORIZONTAL_MONOLITH = "replicated monolith"
    MICROSERVICES = "user-service + data-service + API gateway"


class Database(Enum):
    SQLITE = "SQLite"
    # Phase 1 after a demotion from PostgreSQL (with demotion.statefulTiers Retain): the
    # data stays where it lives, on the retained primary (see `Phase.holding_data_in`).
    POSTGRES_PRIMARY = "PostgreSQL primary (the data stays there after a demotion)"
    POSTGRES = "PostgreSQL primary + read replicas"
    POSTGRES_SHARDED_OR_REPLICATED = "PostgreSQL, read replicas or shards"
    POSTGRES_AND_CASSANDRA = "PostgreSQL + Cassandra"

    @property
    def postgres(self) -> bool:
        return self is not Database.SQLITE

    @property
    def shardable(self) -> bool:
        """Whether a plan may split PostgreSQL into shards (spec.overrides[].shards)."""
        return self in (Database.POSTGRES_SHARDED_OR_REPLICATED, Database.POSTGRES_AND_CASSANDRA)

    @property
    def cassandra(self) -> bool:
        return self is Database.POSTGRES_AND_CASSANDRA


class Cache(Enum):
    NONE = "none"
    REDIS = "Redis"
    REDIS_CLUSTER = "Redis Cluster"
    MULTI_LAYER = "edge + Redis Cluster + in-app"

    @property
    def redis(self) -> bool:
        return self is not Cache.NONE

    @property
    def redis_cluster(self) -> bool:
        return self in (Cache.REDIS_CLUSTER, Cache.MULTI_LAYER)


class Queue(Enum):
    NONE = "none"
    RABBITMQ = "RabbitMQ + workers"


class Stream(Enum):
    NONE = "none"
    KAFKA = "Kafka + event consumers"


class Edge(Enum):
    SERVICE = "Service"
    EDGE_CACHE = "Service + nginx edge cache"
    GATEWAY_AND_EDGE_CACHE = "API gateway + nginx edge cache"

    @property
    def edge_cache(self) -> bool:
        return self is not Edge.SERVICE


@dataclass(frozen=True)
class Described:
    """A phase in words: one column of the README's table."""

    users: str
    application: str
    database: str
    caching: str
    edge: str
    messaging: str
    deploy_strategy: str


@dataclass(frozen=True)
class Phase:
    """One column of the seed's tables, plus the defaults the renderer starts from."""

    number: int
    title: str
    # What the phase runs: the renderer, transitions and rollouts ask these.
    application: Application
    database: Database
    cache: Cache
    queue: Queue
    stream: Stream
    edge: Edge
    strategy: RolloutStrategy
    described: Described
    app_replicas: int
    app_size: Size
    read_replicas: int
    autoscale: Autoscale | None
    worker_replicas: int

    def holding_data_in(self, tier: DataTier | None) -> Phase:
        """This phase as it runs when the plan's data lives in `tier`: a phase without
        PostgreSQL keeps the data on the PostgreSQL primary once it lives there (a
        demotion never moves the app onto a database that lacks its data)."""
        if tier == "PostgreSQL" and not self.database.postgres:
            return replace(self, database=Database.POSTGRES_PRIMARY, read_replicas=0)
        return self

    @property
    def colours(self) -> bool:
        """Blue-green: the app runs as two colours, and its Service selects the live one."""
        return self.strategy is RolloutStrategy.BLUE_GREEN


PHASES: dict[int, Phase] = {
    1: Phase(
        number=1,
        title="Monolith",
        application=Application.MONOLITH,
        database=Database.SQLITE,
        cache=Cache.NONE,
        queue=Queue.NONE,
        stream=Stream.NONE,
        edge=Edge.SERVICE,
        strategy=RolloutStrategy.RECREATE,
        described=Described(
            users="0 - 1K",
            application="one monolith replica",
            database="SQLite on a PersistentVolumeClaim",
            caching="none",
            edge="ClusterIP Service",
            messaging="none",
            deploy_strategy="single server (Recreate)",
        ),
        app_replicas=1,
        app_size=Size("250m", "256Mi", "1", "512Mi"),
        read_replicas=0,
        autoscale=None,
        worker_replicas=0,
    ),
    2: Phase(
        number=2,
        title="Vertical scaling",
        application=Application.VERTICAL_MONOLITH,
        database=Database.POSTGRES,
        cache=Cache.REDIS,
        queue=Queue.NONE,
        stream=Stream.NONE,
        edge=Edge.SERVICE,
        strategy=RolloutStrategy.BLUE_GREEN,
        described=Described(
            users="1K - 100K",
            application="one larger monolith replica",
            database="PostgreSQL primary + streaming read replicas",
            caching="Redis (application-level cache)",
            edge="Service (load balancer optional)",
            messaging="none",
            deploy_strategy="blue-green",
        ),
        app_replicas=1,
        app_size=Size("2", "2Gi", "4", "4Gi"),
        read_replicas=2,
        autoscale=None,
        worker_replicas=0,
    ),
    3: Phase(
        number=3,
        title="Horizontal scaling",
        application=Application.HORIZONTAL_MONOLITH,
        database=Database.POSTGRES_SHARDED_OR_REPLICATED,
        cache=Cache.REDIS_CLUSTER,
        queue=Queue.RABBITMQ,
        stream=Stream.NONE,
        edge=Edge.EDGE_CACHE,
        strategy=RolloutStrategy.ROLLING,
        described=Described(
            users="100K - 1M",
            application="monolith, >= 3 replicas + HPA + PDB",
            database="PostgreSQL with more read replicas, or shards",
            caching="Redis Cluster (6 nodes)",
            edge="Service + nginx edge cache (CDN stand-in)",
            messaging="RabbitMQ (3 nodes) + workers",
            deploy_strategy="rolling (maxUnavailable 0)",
        ),
        app_replicas=3,
        app_size=Size("500m", "512Mi", "2", "1Gi"),
        read_replicas=3,
        autoscale=Autoscale(3, 20, 70),
        worker_replicas=2,
    ),
    4: Phase(
        number=4,
        title="Microservices",
        application=Application.MICROSERVICES,
        database=Database.POSTGRES_AND_CASSANDRA,
        cache=Cache.MULTI_LAYER,
        queue=Queue.RABBITMQ,
        stream=Stream.KAFKA,
        edge=Edge.GATEWAY_AND_EDGE_CACHE,
        strategy=RolloutStrategy.CANARY,
        described=Described(
            users="1M+",
            application="user-service + data-service + API gateway, each with HPA",
            database="PostgreSQL for transactions + Cassandra for scale",
            caching="multi-layer: edge + Redis Cluster + in-app",
            edge="API gateway + nginx edge cache",
            messaging="Kafka (KRaft, 3 brokers) event stream + RabbitMQ job queue",
            deploy_strategy="canary, metrics-gated",
        ),
        app_replicas=3,
        app_size=Size("500m", "512Mi", "2", "1Gi"),
        read_replicas=3,
        autoscale=Autoscale(3, 30, 70),
        worker_replicas=3,
    ),
}


def first_phase(runs: Callable[[Phase], bool]) -> int:
    """The lowest phase for which `runs` holds: where a feature enters the seed."""
    return min(number for number, phase in PHASES.items() if runs(phase))


# The first phase that runs PostgreSQL: the one SQLite's rows migrate into.
FIRST_POSTGRES_PHASE = first_phase(lambda phase: phase.database.postgres)


# Sizes of the backing services, the same in every phase unless an override sets them.
COMPONENT_SIZES: dict[str, Size] = {
    "postgres": Size("500m", "1Gi", "2", "2Gi"),
    "exporter": Size("50m", "64Mi", "200m", "128Mi"),
    "redis": Size("250m", "512Mi", "1", "1Gi"),
    "rabbitmq": Size("500m", "1Gi", "2", "2Gi"),
    "kafka": Size("1", "2Gi", "2", "4Gi"),
    "cassandra": Size("1", "4Gi", "2", "4Gi"),
    "nginx": Size("100m", "128Mi", "500m", "256Mi"),
    "job": Size("100m", "128Mi", "500m", "512Mi"),
}

STORAGE: dict[str, str] = {
    "sqlite": "5Gi",
    "postgres": "20Gi",
    "redis-cluster": "1Gi",
    "rabbitmq": "8Gi",
    "kafka": "20Gi",
    "cassandra": "50Gi",
}

# Defaults; spec.overrides[].components sets each of them (see api.Components).
REDIS_CLUSTER_NODES = 6  # 3 masters, each with one replica: the smallest HA Redis Cluster
RABBITMQ_NODES = 3
KAFKA_BROKERS = 3
# Partitions of the app's event topic; phase 4 runs one event consumer per partition.
KAFKA_PARTITIONS = 3
CASSANDRA_NODES = 3
EDGE_REPLICAS = 2

_ROWS: tuple[tuple[str, str], ...] = (
    ("Users", "users"),
    ("Application", "application"),
    ("Database", "database"),
    ("Caching", "caching"),
    ("Edge", "edge"),
    ("Messaging", "messaging"),
    ("Deploy strategy", "deploy_strategy"),
)


def catalog_markdown_table() -> str:
    """The phase table of the README, one column per phase."""
    phases = [PHASES[n] for n in sorted(PHASES)]
    header = "| | " + " | ".join(f"Phase {p.number}: {p.title}" for p in phases) + " |"
    rule = "|---|" + "---|" * len(phases)
    body = [
        f"| {label} | " + " | ".join(str(getattr(p.described, attr)) for p in phases) + " |"
        for label, attr in _ROWS
    ]
    return "\n".join([header, rule, *body]) + "\n"
