"""The ScalePlan API (phaseshift.dev/v1alpha1): pydantic models for spec and status.

These models are the source of truth. The CRD in crds/scaleplan.yaml is generated from
them (phaseshift.crd), and every cross-field rule here has a CEL twin attached to the
model through `x-kubernetes-validations`, so the API server and `parse_plan` accept
exactly the same plans.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

from phaseshift.promql import PlanKey, fill_for_plan

GROUP = "phaseshift.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScalePlan"
PLURAL = "scaleplans"
SINGULAR = "scaleplan"
SHORT_NAME = "sp"

MIN_PHASE = 1
MAX_PHASE = 4
HISTORY_LIMIT = 20

# Labels on every managed object.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "phaseshift"
LABEL_PLAN = f"{GROUP}/plan"
LABEL_PHASE = f"{GROUP}/phase"
LABEL_COMPONENT = f"{GROUP}/component"
# Stateful objects kept after a demotion carry this label with value "true".
LABEL_RETAIN = f"{GROUP}/retain"
# With Manual approval the operator acts only when this annotation names the target phase.
ANNOTATION_APPROVE = f"{GROUP}/approve"

DEFAULT_IMAGE = "ghcr.io/phaseshift/sample-app:0.1.0"
DEFAULT_PROMETHEUS_URL = "http://prometheus.monitoring.svc:9090"
# $namespace and $plan are replaced by the plan's namespace and name before querying.
# Each default keeps the namespace and plan labels (`by (namespace, plan)`), so the
# operator evaluates all plans sharing a Prometheus in one query per signal.
DEFAULT_SIGNALS: dict[str, str] = {
    "activeUsers": (
        'sum by (namespace, plan) (app_active_users{namespace="$namespace",plan="$plan"})'
    ),
    "rps": (
        "sum by (namespace, plan) (rate(http_requests_total"
        '{namespace="$namespace",plan="$plan"}[1m]))'
    ),
    "p95LatencySeconds": (
        "histogram_quantile(0.95, sum by (namespace, plan, le) (rate("
        'http_request_duration_seconds_bucket{namespace="$namespace",plan="$plan"}[1m])))'
    ),
    # `or 0 * total` instead of `or vector(0)`: zero errors still yields 0, with the labels kept.
    "errorRate": (
        "(sum by (namespace, plan) (rate(http_requests_total"
        '{namespace="$namespace",plan="$plan",code=~"5.."}[1m]))'
        " or 0 * sum by (namespace, plan) (rate(http_requests_total"
        '{namespace="$namespace",plan="$plan"}[1m])))'
        " / clamp_min(sum by (namespace, plan) (rate(http_requests_total"
        '{namespace="$namespace",plan="$plan"}[1m])), 1e-9)'
    ),
}
# The canary analysis: the canary track's error rate and p95 latency. $track becomes
# "canary" (or "stable" to compare); pods carry the track as a label Prometheus keeps.
DEFAULT_CANARY_METRICS: dict[str, str] = {
    "errorRate": (
        '(sum(rate(http_requests_total{namespace="$namespace",plan="$plan",track="$track",'
        'code=~"5.."}[1m])) or 0 * sum(rate(http_requests_total{namespace="$namespace",'
        'plan="$plan",track="$track"}[1m]))) / clamp_min(sum(rate(http_requests_total'
        '{namespace="$namespace",plan="$plan",track="$track"}[1m])), 1e-9)'
    ),
    "p95LatencySeconds": (
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{namespace="$namespace",plan="$plan",track="$track"}[1m])))'
    ),
}
# The seed's boundaries: phase 1 serves up to 1K users, phase 2 up to 100K, phase 3 up to 1M.
DEFAULT_PROMOTE_AT_USERS: dict[int, float] = {1: 1_000, 2: 100_000, 3: 1_000_000}

# A Kubernetes resource quantity without sign, e.g. 250m, 1.5, 512Mi, 1e3.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
SIGNAL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,62}$"
COMPONENT_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]{0,254}$"
# metav1.Condition's own validation patterns.
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
# Explicit ASCII classes, not \S: Go's RE2 (API server, CEL) and the Rust regex pydantic
# uses disagree on what Unicode whitespace is.
HTTP_URL_PATTERN = r"^https?://[!-~]+$"

# Longest PromQL expression accepted; bounds CEL cost estimates too.
MAX_PROMQL_LENGTH = 4096
MAX_SIGNALS = 16
# The canary never takes more than half the traffic: as many canary pods as stable ones.
MAX_CANARY_WEIGHT = 50
# The longest message a condition or an Event the operator writes carries (longer ones
# are cut): metav1.Condition allows 32,768, but status stays readable at this length.
MAX_MESSAGE_CHARS = 1024


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> JsonDict:
    """One `x-kubernetes-validations` entry; the Python twin lives in the same model.

    Rules guard defaulted fields with has(): the API server also checks them against the
    schema's own `default: {}` values, before nested defaults are filled in.
    """
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def _quantity_to_str(value: object) -> object:
    # YAML turns `cpu: 1` into an int; the CRD marks quantities int-or-string like core types.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Quantity = Annotated[
    str,
    StringConstraints(pattern=QUANTITY_PATTERN, max_length=64),
    # outermost, so it runs before the string constraints
    BeforeValidator(_quantity_to_str),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "minimum": 0}),
]
SignalName = Annotated[str, StringConstraints(pattern=SIGNAL_NAME_PATTERN)]
PromQL = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMQL_LENGTH)]
ComponentName = Annotated[str, StringConstraints(pattern=COMPONENT_NAME_PATTERN)]
Image = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[!-~]+$")]
# Bounded well below 2**53: larger values stop surviving the API server's JSON (a float
# comes back as an integer of a different value), and no signal needs more.
MAX_THRESHOLD = 1e12
Threshold = Annotated[float, Field(ge=0, le=MAX_THRESHOLD)]
Phase = Annotated[int, Field(ge=MIN_PHASE, le=MAX_PHASE)]
Colour = Literal["blue", "green"]


def other_colour(colour: Colour | None) -> Colour:
    """The blue-green colour that is not `colour` (no colour yet counts as blue)."""
    return "blue" if colour == "green" else "green"


# Phases that can be left upward: phase 4 is the last.
PromotablePhase = Annotated[int, Field(ge=MIN_PHASE, le=MAX_PHASE - 1)]
Seconds = Annotated[int, Field(ge=0, le=86_400)]
PositiveSeconds = Annotated[int, Field(ge=1, le=86_400)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Reason = Annotated[str, StringConstraints(pattern=REASON_PATTERN, max_length=1024)]
Message = Annotated[str, StringConstraints(max_length=32_768)]


class ApiModel(BaseModel):
    """Base of all ScalePlan models: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    def to_json(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, no unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Status models ignore unknown keys, so an older operator can read a newer status."""

    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------------------- spec: app


class ResourceList(ApiModel):
    cpu: Quantity | None = None
    """CPU quantity, e.g. 250m or 2."""
    memory: Quantity | None = None
    """Memory quantity, e.g. 256Mi."""


class Resources(ApiModel):
    requests: ResourceList | None = None
    limits: ResourceList | None = None


class EnvVar(ApiModel):
    name: Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN, max_length=255)]
    value: Annotated[str, StringConstraints(max_length=4096)] = ""


class App(ApiModel):
    """The application being scaled."""

    image: Image = DEFAULT_IMAGE
    """Container image of the application (pinned, never :latest)."""
    port: Annotated[int, Field(ge=1, le=65_535)] = 8080
    """Port the application listens on for HTTP and /metrics."""
    resources: Resources | None = None
    """Base resources; each phase's catalog default or override wins over these."""
    env: Annotated[
        list[EnvVar],
        Field(
            max_length=64,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = []
    """Extra environment variables for the application container."""

    @field_validator("env")
    @classmethod
    def _env_names_unique(cls, env: list[EnvVar]) -> list[EnvVar]:
        _require_unique([e.name for e in env], "name")
        return env


# ------------------------------------------------------------------------ spec: metrics


class Metrics(ApiModel):
    """Where the load signals come from."""

    prometheus_url: Annotated[str, StringConstraints(pattern=HTTP_URL_PATTERN, max_length=2048)] = (
        DEFAULT_PROMETHEUS_URL
    )
    """Base URL of the Prometheus HTTP API."""
    signals: Annotated[dict[SignalName, PromQL], Field(min_length=1, max_length=MAX_SIGNALS)] = (
        Field(default_factory=lambda: dict(DEFAULT_SIGNALS))
    )
    """Signal name -> PromQL; $namespace and $plan are replaced by the plan's own."""
    query_timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 10
    """Timeout of each Prometheus query."""
    staleness_seconds: Annotated[int, Field(ge=1, le=3_600)] = 120
    """A sample older than this counts as missing (MetricsAvailable=False)."""


# ------------------------------------------------------------------------- spec: phases


class PhaseThreshold(ApiModel):
    """When to leave `phase` upward: any signal at or above its threshold promotes."""

    phase: PromotablePhase
    promote_when: Annotated[
        dict[SignalName, Threshold], Field(min_length=1, max_length=MAX_SIGNALS)
    ]
    """Signal name -> threshold to leave this phase upward."""


def _default_phases() -> list[PhaseThreshold]:
    return [
        PhaseThreshold(phase=phase, promote_when={"activeUsers": users})
        for phase, users in DEFAULT_PROMOTE_AT_USERS.items()
    ]


_THRESHOLDS_INCREASE = cel(
    "self.all(a, self.all(b, a.phase >= b.phase || "
    "a.promoteWhen.all(k, !(k in b.promoteWhen) || a.promoteWhen[k] < b.promoteWhen[k])))",
    "a signal's threshold must increase strictly from phase to phase",
    reason="FieldValueInvalid",
)


def _check_thresholds_increase(phases: Sequence[PhaseThreshold]) -> None:
    for a in phases:
        for b in phases:
            if a.phase >= b.phase:
                continue
            for name, threshold in a.promote_when.items():
                if name in b.promote_when and not threshold < b.promote_when[name]:
                    raise ValueError(
                        f"threshold of {name!r} must increase strictly from phase to phase "
                        f"(phase {a.phase}: {threshold}, phase {b.phase}: {b.promote_when[name]})"
                    )


# ------------------------------------------------------------------------- spec: policy


class Predictive(ApiModel):
    lead_seconds: Seconds = 0
    """Promote when the signal is predicted to cross its threshold this far ahead; 0 = off."""
    lookback_seconds: Annotated[int, Field(ge=30, le=86_400)] = 300
    """History predict_linear fits the trend on."""


class Promotion(ApiModel):
    stabilization_seconds: Seconds = 60
    """A threshold must be exceeded for this long (min_over_time) before promoting."""
    cooldown_seconds: Seconds = 300
    """No new transition for this long after the last one finished."""
    predictive: Predictive = Field(default_factory=Predictive)


class Demotion(ApiModel):
    enabled: bool = True
    hysteresis: Annotated[float, Field(gt=0, lt=1)] = 0.3
    """Demote only below threshold * (1 - hysteresis), so a hovering signal never flaps."""
    stabilization_seconds: Annotated[int, Field(ge=0, le=604_800)] = 900
    """The signal must stay below the demotion threshold for this long (max_over_time)."""
    stateful_tiers: Literal["Retain", "Migrate"] = "Retain"
    """Retain keeps databases, queues and streams on demotion, scaled to zero with their
    volumes, and the app on the database its data lives in (status.dataTier). Migrate,
    moving the data back down, is not implemented yet and behaves as Retain."""


_MIN_LE_MAX = cel(
    "!has(self.minPhase) || !has(self.maxPhase) || self.minPhase <= self.maxPhase",
    "minPhase must not be greater than maxPhase",
    field_path=".minPhase",
    reason="FieldValueInvalid",
)
_MANUAL_NAMES_APPROVERS = cel(
    "!has(self.approval) || self.approval != 'Manual' || "
    "(has(self.approvers) && size(self.approvers) > 0)",
    "a Manual plan must name at least one approver",
    field_path=".approvers",
    reason="FieldValueRequired",
)


class Policy(ApiModel):
    """How and when the operator moves between phases."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_MIN_LE_MAX, _MANUAL_NAMES_APPROVERS]}
    )

    evaluation_interval_seconds: Annotated[int, Field(ge=1, le=3_600)] = 15
    """How often signals are evaluated."""
    promotion: Promotion = Field(default_factory=Promotion)
    demotion: Demotion = Field(default_factory=Demotion)
    min_phase: Phase = MIN_PHASE
    max_phase: Phase = MAX_PHASE
    paused: bool = False
    """Hold the current phase: no decisions are acted on."""
    approval: Literal["Automatic", "Manual"] = "Automatic"
    """Manual: act only when annotation phaseshift.dev/approve=<target phase> is set."""
    approvers: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=253)]],
        Field(max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"}),
    ] = []
    """Who may approve a transition of a Manual plan (users or groups)."""

    @field_validator("approvers")
    @classmethod
    def _approvers_unique(cls, approvers: list[str]) -> list[str]:
        _require_unique(approvers, "approver")
        return approvers

    @model_validator(mode="after")
    def _cross_field(self) -> Policy:
        if self.min_phase > self.max_phase:
            raise ValueError(_MIN_LE_MAX["message"])
        if self.approval == "Manual" and not self.approvers:
            raise ValueError(_MANUAL_NAMES_APPROVERS["message"])
        return self


# ---------------------------------------------------------------------- spec: overrides

_HPA_MIN_LE_MAX = cel(
    "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
    "minReplicas must not be greater than maxReplicas",
    field_path=".minReplicas",
    reason="FieldValueInvalid",
)
Replicas = Annotated[int, Field(ge=0, le=1_000)]


class HpaScalingPolicy(ApiModel):
    """autoscaling/v2 HPAScalingPolicy: change by at most `value` pods or percent of the
    current replicas within `periodSeconds`."""

    type: Literal["Pods", "Percent"]
    value: Annotated[int, Field(ge=1, le=1_000)]
    period_seconds: Annotated[int, Field(ge=1, le=1_800)]


class HpaScalingRules(ApiModel):
    """autoscaling/v2 HPAScalingRules for one direction; unset fields keep the operator's
    defaults (see HpaBehavior)."""

    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3_600)] | None = None
    """How far back the HPA looks for a higher (scaling down) or lower (scaling up)
    recommendation before it acts."""
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    """Which policy wins when several apply; Disabled stops scaling in this direction."""
    policies: Annotated[list[HpaScalingPolicy], Field(min_length=1, max_length=10)] | None = None
    """Replace the default policies of this direction (the list as a whole)."""


class HpaBehavior(ApiModel):
    """The HPAs' spec.behavior. By default they scale up at once (no stabilization
    window; per 15 s at most +100% or +4 pods, whichever is more) and down slowly (a
    300 s window; at most -50% per 60 s)."""

    scale_up: HpaScalingRules | None = None
    scale_down: HpaScalingRules | None = None


class Hpa(ApiModel):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_HPA_MIN_LE_MAX]})

    min_replicas: Annotated[int, Field(ge=1, le=1_000)] | None = None
    max_replicas: Annotated[int, Field(ge=1, le=1_000)] | None = None
    target_cpu_utilization_percentage: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, alias="targetCPUUtilizationPercentage"
    )
    behavior: HpaBehavior | None = None
    """How fast the HPAs of this phase scale up and down; each direction's fields
    override the defaults one by one."""

    @model_validator(mode="after")
    def _min_le_max(self) -> Hpa:
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            raise ValueError(_HPA_MIN_LE_MAX["message"])
        return self


Storage = Quantity
# Upper bounds keep plans sane and CEL cost estimates small; no tier needs more.
MAX_NODES = 99
MAX_WORKLOAD_REPLICAS = 100


def _odd(what: str) -> JsonDict:
    return cel(
        "!has(self.nodes) || self.nodes % 2 == 1",
        f"{what} needs an odd number of nodes: an even quorum survives no more failures "
        "than the odd number below it",
        field_path=".nodes",
        reason="FieldValueInvalid",
    )


_REDIS_CLUSTER_SHAPE = cel(
    "!has(self.nodes) || self.nodes % 2 == 0",
    "a Redis Cluster runs one replica per master: nodes must be even (at least 6: "
    "3 masters and 3 replicas)",
    field_path=".nodes",
    reason="FieldValueInvalid",
)
_RABBITMQ_ODD = _odd("RabbitMQ")
_KAFKA_ODD = _odd("A KRaft controller quorum")


class Sized(ApiModel):
    resources: Resources | None = None
    """Requests and limits of the component's main container; unset values keep the
    catalog's default, and a limit below its request is raised to it."""


class PostgresComponent(Sized):
    """PostgreSQL (phases 2-4): the primary and shards, and their read replicas."""

    replica_resources: Resources | None = None
    """Requests and limits of each read replica; unset values follow `resources`."""
    storage: Storage | None = None
    """Size of every PostgreSQL volume (primary, replicas, shards), e.g. 20Gi."""


class RedisComponent(Sized):
    """Redis (phases 2-4): the single cache of phase 2, the Redis Cluster of phases 3-4."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_REDIS_CLUSTER_SHAPE]}
    )

    nodes: Annotated[int, Field(ge=6, le=MAX_NODES)] | None = None
    """Nodes of the Redis Cluster (phases 3-4): masters with one replica each, so even
    and at least 6. Default 6."""
    storage: Storage | None = None
    """Size of each cluster node's volume (it holds nodes.conf only), e.g. 1Gi."""

    @model_validator(mode="after")
    def _shape(self) -> RedisComponent:
        if self.nodes is not None and self.nodes % 2:
            raise ValueError(_REDIS_CLUSTER_SHAPE["message"])
        return self


class RabbitmqComponent(Sized):
    """RabbitMQ (phases 3-4), the job queue."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_RABBITMQ_ODD]})

    nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] | None = None
    """Cluster nodes; odd (1 has no redundancy). Default 3."""
    storage: Storage | None = None
    """Size of each node's volume, e.g. 8Gi."""

    @model_validator(mode="after")
    def _odd_nodes(self) -> RabbitmqComponent:
        if self.nodes is not None and self.nodes % 2 == 0:
            raise ValueError(_RABBITMQ_ODD["message"])
        return self


class KafkaComponent(Sized):
    """Kafka (phase 4), the event stream: combined KRaft broker/controllers. The JVM
    heap is half the memory request."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_KAFKA_ODD]})

    nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] | None = None
    """Brokers, each also a KRaft controller; odd. Topics are replicated min(nodes, 3)
    times. Default 3."""
    storage: Storage | None = None
    """Size of each broker's log volume, e.g. 20Gi."""
    partitions: Annotated[int, Field(ge=1, le=1_000)] | None = None
    """Partitions of the app's event topic (num.partitions); also the default number of
    event consumers. Default 3."""

    @model_validator(mode="after")
    def _odd_nodes(self) -> KafkaComponent:
        if self.nodes is not None and self.nodes % 2 == 0:
            raise ValueError(_KAFKA_ODD["message"])
        return self


class CassandraComponent(Sized):
    """Cassandra (phase 4), the NoSQL store. The JVM heap is half the memory request."""

    nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] | None = None
    """Nodes of the ring. Default 3."""
    storage: Storage | None = None
    """Size of each node's volume, e.g. 50Gi."""


class WorkloadComponent(Sized):
    replicas: Annotated[int, Field(ge=0, le=MAX_WORKLOAD_REPLICAS)] | None = None
    """Pods of the Deployment."""


class StorageComponent(ApiModel):
    storage: Storage | None = None
    """Size of the volume, e.g. 5Gi."""


# Which phases run each component: an override for a phase that does not run it is a
# mistake the API server reports. The catalog says the same through each phase's
# features; it imports this module, so these are spelt out here and a unit test
# (tests/unit/test_api_phases.py) holds them to the catalog.
COMPONENT_PHASES: dict[str, tuple[int, ...]] = {
    "sqlite": (1,),
    "postgres": (2, 3, 4),
    "redis": (2, 3, 4),
    "rabbitmq": (3, 4),
    "kafka": (4,),
    "cassandra": (4,),
    "edge": (3, 4),
    "worker": (3, 4),
    "eventConsumer": (4,),
    "exporters": (2, 3, 4),
}


def _component_in_phase(name: str, phases: tuple[int, ...]) -> JsonDict:
    listed = ", ".join(str(p) for p in phases)
    return cel(
        f"!has(self.components) || !has(self.components.{name}) || self.phase in [{listed}]",
        f"components.{name} applies only to phase{'s' if len(phases) > 1 else ''} "
        f"{listed}, which run{'' if len(phases) > 1 else 's'} it",
        field_path=f".components.{name}",
        reason="FieldValueForbidden",
    )


# The first phase whose cache is a Redis Cluster; every later phase keeps it.
REDIS_CLUSTER_FROM_PHASE = 3

_REDIS_NODES_IN_CLUSTER_PHASES = cel(
    "!has(self.components) || !has(self.components.redis) || "
    "!has(self.components.redis.nodes) && !has(self.components.redis.storage) || "
    f"self.phase >= {REDIS_CLUSTER_FROM_PHASE}",
    f"components.redis.nodes and storage size the Redis Cluster of phases "
    f"{REDIS_CLUSTER_FROM_PHASE}-4; phase 2 runs a single Redis without a volume",
    field_path=".components.redis",
    reason="FieldValueForbidden",
)


class Components(ApiModel):
    """Sizes and counts of the parts of a phase besides the app; each field overrides the
    catalog's default. Volume sizes and node counts of a tier that several phases run
    (PostgreSQL, the Redis Cluster, RabbitMQ) hold for every phase, because a
    StatefulSet's volumes cannot change size and a formed cluster does not regroup
    itself: set them in one phase's override, or to the same value in each."""

    sqlite: StorageComponent | None = None
    """Phase 1's SQLite volume (default 5Gi)."""
    postgres: PostgresComponent | None = None
    redis: RedisComponent | None = None
    rabbitmq: RabbitmqComponent | None = None
    kafka: KafkaComponent | None = None
    cassandra: CassandraComponent | None = None
    edge: WorkloadComponent | None = None
    """The nginx edge cache (phases 3-4; default 2 replicas)."""
    worker: WorkloadComponent | None = None
    """The job-queue workers (phases 3-4; default 2 in phase 3, 3 in phase 4); their
    resources start from the app's."""
    event_consumer: WorkloadComponent | None = None
    """The event-stream consumers (phase 4; default one per Kafka partition); their
    resources start from the app's."""
    exporters: Sized | None = None
    """The Prometheus exporters beside PostgreSQL and Redis (phases 2-4)."""


class PhaseOverride(ApiModel):
    """Overrides of the catalog's defaults for one phase; unset fields keep the default."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *(_component_in_phase(name, p) for name, p in COMPONENT_PHASES.items()),
                _REDIS_NODES_IN_CLUSTER_PHASES,
            ]
        }
    )

    phase: Phase
    app_replicas: Replicas | None = None
    app_resources: Resources | None = None
    read_replicas: Annotated[int, Field(ge=0, le=100)] | None = None
    shards: Annotated[int, Field(ge=1, le=256)] | None = None
    hpa: Hpa | None = None
    images: Annotated[dict[ComponentName, Image], Field(max_length=32)] | None = None
    """Component -> image in this phase (postgres, redis, gateway...); wins over the operator's."""
    components: Components | None = None
    """Sizes and counts of the backing services, edge, workers and consumers."""

    @model_validator(mode="after")
    def _components_in_phase(self) -> PhaseOverride:
        if self.components is None:
            return self
        for name, phases in COMPONENT_PHASES.items():
            attr = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
            if getattr(self.components, attr) is not None and self.phase not in phases:
                rule = _component_in_phase(name, phases)
                raise ValueError(f"{rule['message']} (phase {self.phase})")
        redis = self.components.redis
        clustered = self.phase >= REDIS_CLUSTER_FROM_PHASE
        if redis is not None and not clustered and (redis.nodes or redis.storage):
            raise ValueError(_REDIS_NODES_IN_CLUSTER_PHASES["message"])
        return self


# ------------------------------------------------------------------------ spec: exposure

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A host name, optionally with a leading wildcard label (as Ingress and HTTPRoute take).
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DnsName = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
Hostname = Annotated[str, StringConstraints(pattern=HOSTNAME_PATTERN, max_length=253)]
# A qualified name, `prefix/name` or `name`: annotation keys, a loadBalancerClass.
QualifiedName = Annotated[
    str,
    StringConstraints(pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$", max_length=316),
]
AnnotationKey = QualifiedName
AnnotationValue = Annotated[str, StringConstraints(max_length=4096)]


class IngressExposure(ApiModel):
    class_name: DnsName | None = None
    """spec.ingressClassName: which ingress controller serves it (e.g. nginx); unset, the
    cluster's default IngressClass."""
    host: Hostname | None = None
    """The host name the rule matches (e.g. shop.example.com); unset, every host."""
    tls_secret_name: DnsName | None = None
    """A kubernetes.io/tls Secret in the plan's namespace: HTTPS for `host`."""


class ParentRef(ApiModel):
    """A Gateway API parentRef: the Gateway (usually) that routes to the app."""

    name: DnsName
    namespace: DnsName | None = None
    """The Gateway's namespace; unset, the plan's. It must allow routes from here."""
    section_name: DnsName | None = None
    """One listener of the Gateway, by name."""
    group: Annotated[str, StringConstraints(max_length=253)] = "gateway.networking.k8s.io"
    kind: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]+$", max_length=63)] = "Gateway"


class HttpRouteExposure(ApiModel):
    parent_refs: Annotated[list[ParentRef], Field(min_length=1, max_length=8)]
    """The Gateways (or listeners) the route attaches to."""
    hostnames: Annotated[
        list[Hostname], Field(max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"})
    ] = []
    """Host names the route matches; empty, the listener's."""


ExposureType = Literal["ClusterIP", "NodePort", "LoadBalancer", "Ingress", "HTTPRoute"]

_INGRESS_NEEDS_INGRESS = cel(
    "!has(self.type) || self.type != 'Ingress' || has(self.ingress)",
    "type Ingress needs exposure.ingress (at least {})",
    field_path=".ingress",
    reason="FieldValueRequired",
)
_ROUTE_NEEDS_PARENTS = cel(
    "!has(self.type) || self.type != 'HTTPRoute' || has(self.httpRoute)",
    "type HTTPRoute needs exposure.httpRoute with its parentRefs",
    field_path=".httpRoute",
    reason="FieldValueRequired",
)
_NODE_PORT_ONLY_FOR_SERVICES = cel(
    "!has(self.nodePort) || (has(self.type) && self.type in ['NodePort', 'LoadBalancer'])",
    "nodePort applies to type NodePort or LoadBalancer only",
    field_path=".nodePort",
    reason="FieldValueForbidden",
)


class Exposure(ApiModel):
    """How the app is reached from outside the cluster. From `fromPhase` on, the operator
    renders the object of `type`, pointed at the phase's entry: the app (phases 1-2, in
    phase 2 only the live blue-green colour) or the edge cache (phases 3-4, in front of
    the app or the gateway). ClusterIP renders nothing beyond the in-cluster Services."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _INGRESS_NEEDS_INGRESS,
                _ROUTE_NEEDS_PARENTS,
                _NODE_PORT_ONLY_FOR_SERVICES,
            ]
        }
    )

    type: ExposureType = "ClusterIP"
    """ClusterIP (in-cluster only), NodePort or LoadBalancer (a Service <plan>-public),
    Ingress (networking.k8s.io/v1) or HTTPRoute (Gateway API, gateway.networking.k8s.io/v1)."""
    from_phase: Phase = 2
    """The first phase exposed (the seed's load balancer comes with phase 2; 1 exposes
    the monolith too, 3 only from the edge cache on)."""
    node_port: Annotated[int, Field(ge=30_000, le=32_767)] | None = None
    """A fixed node port for NodePort or LoadBalancer; unset, the API server picks one."""
    load_balancer_class: QualifiedName | None = None
    """spec.loadBalancerClass of a LoadBalancer Service; unset, the cloud's default."""
    annotations: Annotated[dict[AnnotationKey, AnnotationValue], Field(max_length=32)] = {}
    """Annotations of the exposing object, e.g. a cloud load balancer's settings or an
    ingress controller's."""
    ingress: IngressExposure | None = None
    http_route: HttpRouteExposure | None = None

    @model_validator(mode="after")
    def _complete(self) -> Exposure:
        if self.type == "Ingress" and self.ingress is None:
            raise ValueError(_INGRESS_NEEDS_INGRESS["message"])
        if self.type == "HTTPRoute" and self.http_route is None:
            raise ValueError(_ROUTE_NEEDS_PARENTS["message"])
        if self.node_port is not None and self.type not in ("NodePort", "LoadBalancer"):
            raise ValueError(_NODE_PORT_ONLY_FOR_SERVICES["message"])
        return self


# ------------------------------------------------------------- spec: mesh, observability


class Mesh(ApiModel):
    provider: Literal["None", "Linkerd", "Istio"] = "None"


class Observability(ApiModel):
    service_monitor: bool = False
    """Create a prometheus-operator ServiceMonitor for the app."""
    prometheus_rule: bool = False
    """Create a PrometheusRule with the SLO alerts."""
    slo_latency_seconds: Annotated[float, Field(gt=0, le=60)] = 0.25
    slo_error_rate: Annotated[float, Field(gt=0, lt=1)] = 0.01


# ------------------------------------------------------------------------ spec: rollout


class BlueGreen(ApiModel):
    grace_seconds: Seconds = 300
    """How long the old colour is kept scaled after the switch, for an instant rollback."""


class Rolling(ApiModel):
    progress_deadline_seconds: PositiveSeconds = 600
    """How long new pods may take to become Ready before the rollout is rolled back
    (every strategy's wait for new pods; also each Deployment's progressDeadlineSeconds)."""


class CanaryMetrics(ApiModel):
    error_rate: PromQL = DEFAULT_CANARY_METRICS["errorRate"]
    """Fraction of the canary's requests that failed; $namespace, $plan, $track filled in."""
    p95_latency_seconds: PromQL = DEFAULT_CANARY_METRICS["p95LatencySeconds"]
    """The canary's p95 latency in seconds; $namespace, $plan, $track filled in."""


class Canary(ApiModel):
    weight_percent: Annotated[int, Field(ge=1, le=MAX_CANARY_WEIGHT)] = 10
    """Traffic share added to the canary at each passed check (by replica ratio)."""
    interval_seconds: PositiveSeconds = 60
    """Time between two checks of the canary."""
    threshold: Annotated[int, Field(ge=1, le=100)] = 3
    """Failed checks before the canary is rolled back."""
    iterations: Annotated[int, Field(ge=1, le=100)] = 5
    """Passed checks before the canary is promoted to stable."""
    max_error_rate: Fraction = 0.01
    max_p95_latency_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    metrics: CanaryMetrics = Field(default_factory=CanaryMetrics)


class Rollout(ApiModel):
    """How a new release (a change of spec.app) reaches the pods, per the phase's strategy:
    phase 1 Recreate, phase 2 blue-green, phase 3 rolling, phase 4 metrics-gated canary."""

    blue_green: BlueGreen = Field(default_factory=BlueGreen)
    rolling: Rolling = Field(default_factory=Rolling)
    canary: Canary = Field(default_factory=Canary)


# --------------------------------------------------------------------------- spec: root

# Volume sizes and node counts of the tiers several phases run: one value for all phases.
SHARED_ACROSS_PHASES: tuple[tuple[str, str], ...] = (
    ("postgres", "storage"),
    ("redis", "storage"),
    ("redis", "nodes"),
    ("rabbitmq", "storage"),
    ("rabbitmq", "nodes"),
)


def _same_in_every_phase(component: str, field: str) -> JsonDict:
    path = f"components.{component}.{field}"

    def set_in(o: str) -> str:
        return (
            f"has({o}.components) && has({o}.components.{component}) && "
            f"has({o}.components.{component}.{field})"
        )

    return cel(
        f"self.all(a, self.all(b, !({set_in('a')}) || !({set_in('b')}) || a.{path} == b.{path}))",
        f"{path} must be the same in every override that sets it: the tier keeps its "
        "volumes and members from phase to phase",
        reason="FieldValueInvalid",
    )


def _check_same_in_every_phase(overrides: Sequence[PhaseOverride]) -> None:
    for component, field in SHARED_ACROSS_PHASES:
        values = {}
        for o in overrides:
            part = getattr(o.components, component, None) if o.components else None
            value = getattr(part, field, None) if part is not None else None
            if value is not None:
                values[o.phase] = value
        if len(set(values.values())) > 1:
            rule = _same_in_every_phase(component, field)
            shown = ", ".join(f"phase {p}: {v}" for p, v in sorted(values.items()))
            raise ValueError(f"{rule['message']} ({shown})")


_SIGNALS_DEFINED = cel(
    "!has(self.phases) || !has(self.metrics) || !has(self.metrics.signals) || "
    "self.phases.all(p, p.promoteWhen.all(k, k in self.metrics.signals))",
    "every signal named in phases[].promoteWhen must be defined in metrics.signals",
    field_path=".phases",
    reason="FieldValueInvalid",
)


class ScalePlanSpec(ApiModel):
    """What to scale, on which signals, and how."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_SIGNALS_DEFINED]})

    app: App = Field(default_factory=App)
    metrics: Metrics = Field(default_factory=Metrics)
    phases: Annotated[
        list[PhaseThreshold],
        Field(
            max_length=MAX_PHASE - 1,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["phase"],
                "x-kubernetes-validations": [_THRESHOLDS_INCREASE],
            },
        ),
    ] = Field(default_factory=_default_phases)
    """Thresholds to leave each phase upward (phases 1-3, each at most once)."""
    policy: Policy = Field(default_factory=Policy)
    overrides: Annotated[
        list[PhaseOverride],
        Field(
            max_length=MAX_PHASE,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["phase"],
                "x-kubernetes-validations": [
                    _same_in_every_phase(c, f) for c, f in SHARED_ACROSS_PHASES
                ],
            },
        ),
    ] = []
    """Per-phase component overrides (each phase at most once)."""
    exposure: Exposure = Field(default_factory=Exposure)
    """How the app is reached from outside the cluster."""
    mesh: Mesh = Field(default_factory=Mesh)
    observability: Observability = Field(default_factory=Observability)
    rollout: Rollout = Field(default_factory=Rollout)

    @field_validator("phases")
    @classmethod
    def _phases_valid(cls, phases: list[PhaseThreshold]) -> list[PhaseThreshold]:
        _require_unique([p.phase for p in phases], "phase")
        _check_thresholds_increase(phases)
        return phases

    @field_validator("overrides")
    @classmethod
    def _overrides_unique(cls, overrides: list[PhaseOverride]) -> list[PhaseOverride]:
        _require_unique([o.phase for o in overrides], "phase")
        _check_same_in_every_phase(overrides)
        return overrides

    @model_validator(mode="after")
    def _signals_defined(self) -> ScalePlanSpec:
        for p in self.phases:
            missing = sorted(set(p.promote_when) - set(self.metrics.signals))
            if missing:
                raise ValueError(f"{_SIGNALS_DEFINED['message']} (undefined: {', '.join(missing)})")
        return self

    def threshold_for(self, phase: int) -> dict[str, float]:
        """Signal -> threshold to leave `phase` upward; empty when the phase is never left."""
        for p in self.phases:
            if p.phase == phase:
                return dict(p.promote_when)
        return {}

    def override_for(self, phase: int) -> PhaseOverride | None:
        for o in self.overrides:
            if o.phase == phase:
                return o
        return None


# ---------------------------------------------------------------------------- status


class ConditionType(StrEnum):
    READY = "Ready"
    TRANSITIONING = "Transitioning"
    METRICS_AVAILABLE = "MetricsAvailable"
    DEGRADED = "Degraded"
    AWAITING_APPROVAL = "AwaitingApproval"
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """metav1.Condition."""

    type: Annotated[str, StringConstraints(pattern=CONDITION_TYPE_PATTERN, max_length=316)]
    status: ConditionStatus
    reason: Reason
    message: Message = ""
    last_transition_time: AwareDatetime
    observed_generation: Annotated[int, Field(ge=0)] | None = None


class Decision(StatusModel):
    """The policy's last verdict and the signal values it was based on."""

    at: AwareDatetime
    target: Phase
    reason: Reason
    message: Message = ""
    signals: Annotated[dict[str, float], Field(max_length=MAX_SIGNALS)] = {}


class Transition(StatusModel):
    """A transition in progress; `step` indexes `steps`, so a restart resumes there."""

    from_: Phase = Field(alias="from")
    to: Phase
    step: Annotated[int, Field(ge=0)] = 0
    steps: Annotated[
        list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=64)
    ] = []
    started_at: AwareDatetime
    step_started_at: AwareDatetime | None = None

    @property
    def current_step(self) -> str | None:
        return self.steps[self.step] if self.step < len(self.steps) else None


class Release(StatusModel):
    """A version of spec.app that has been rolled out, kept so it can be rendered again."""

    revision: Annotated[str, StringConstraints(max_length=64)]
    app: App


class RolloutStrategy(StrEnum):
    RECREATE = "Recreate"
    BLUE_GREEN = "BlueGreen"
    ROLLING = "Rolling"
    CANARY = "Canary"


class RolloutState(StrEnum):
    WAITING = "Waiting"
    """A phase transition is in progress; the rollout starts after it."""
    PROGRESSING = "Progressing"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"


class CanaryStatus(StatusModel):
    iteration: Annotated[int, Field(ge=0)] = 0
    """Checks passed so far."""
    failed_checks: Annotated[int, Field(ge=0)] = 0
    weight_percent: Annotated[int, Field(ge=0, le=100)] = 0
    last_check_at: AwareDatetime | None = None
    error_rate: float | None = None
    p95_latency_seconds: float | None = None


class RolloutStatus(StatusModel):
    """The latest rollout of a release; `step` and its timestamps let a restart resume."""

    revision: Annotated[str, StringConstraints(max_length=64)]
    image: Image
    from_revision: Annotated[str, StringConstraints(max_length=64)] = ""
    strategy: RolloutStrategy
    state: RolloutState
    step: Annotated[str, StringConstraints(max_length=64)] = ""
    started_at: AwareDatetime
    step_started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    previous: Release | None = None
    """The release the old colour keeps running during the blue-green grace period."""
    canary: CanaryStatus | None = None
    message: Message = ""


class HistoryEntry(StatusModel):
    from_: Phase = Field(alias="from")
    to: Phase
    at: AwareDatetime
    reason: Reason
    duration_seconds: Annotated[float, Field(ge=0)] = 0.0


DataTier = Literal["SQLite", "PostgreSQL"]


class ScalePlanStatus(StatusModel):
    phase: Phase | None = None
    """The phase the application runs in now."""
    target_phase: Phase | None = None
    """The phase the operator is moving to (equal to phase when steady)."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    users: Annotated[int, Field(ge=0)] | None = None
    """Active users at the last evaluation."""
    live_colour: Colour | None = None
    """Which blue-green colour serves traffic."""
    data_tier: DataTier | None = None
    """Where the application's data lives. It moves to PostgreSQL with the migration of
    the first phase that runs it and stays there: a later demotion to phase 1 keeps the
    app on the retained PostgreSQL primary instead of the SQLite file, which lacks every
    write made since."""
    conditions: Annotated[
        list[Condition],
        Field(
            max_length=16,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ] = []
    last_decision: Decision | None = None
    transition: Transition | None = None
    release: Release | None = None
    """The version of spec.app the application runs (the stable track's)."""
    app_revision: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The revision of spec.app last acted on: a rolled-back release is tried again only
    after spec.app has changed (to anything, including back to the running release)."""
    rollout: RolloutStatus | None = None
    """The latest rollout of a new release: in progress, or how the last one ended."""
    history: Annotated[list[HistoryEntry], Field(max_length=HISTORY_LIMIT)] = []
    """Past transitions, newest last, at most 20."""

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


# ------------------------------------------------------------------------ the object


class ObjectMeta(StatusModel):
    """The parts of metav1.ObjectMeta the operator reads."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: datetime | None = None


class ScalePlan(StatusModel):
    """A whole ScalePlan object as the API server returns it."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ScalePlanSpec = Field(default_factory=ScalePlanSpec)
    status: ScalePlanStatus = Field(default_factory=ScalePlanStatus)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def threshold_for(self, phase: int) -> dict[str, float]:
        return self.spec.threshold_for(phase)

    def approved_phase(self) -> int | None:
        """The phase named by the approve annotation, or None when absent or not a phase."""
        value = self.metadata.annotations.get(ANNOTATION_APPROVE, "").strip()
        if value.isdigit() and MIN_PHASE <= int(value) <= MAX_PHASE:
            return int(value)
        return None

    def signal_queries(self) -> dict[str, str]:
        """Signal name -> PromQL with $namespace and $plan filled in for this plan."""
        key = PlanKey(self.namespace, self.name)
        return {
            name: fill_for_plan(query, key) for name, query in self.spec.metrics.signals.items()
        }


# ---------------------------------------------------------------------------- helpers


class InvalidSpec(ValueError):
    """A ScalePlan that does not satisfy the API; the message names the offending fields."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_plan(body: Mapping[str, Any]) -> ScalePlan:
    """Validate a whole ScalePlan object (metadata, spec, status) or raise InvalidSpec."""
    try:
        return ScalePlan.model_validate(_plain(body))
    except ValidationError as err:
        raise InvalidSpec(_describe(err)) from None


def managed_labels(plan: str, phase: int, component: str) -> dict[str, str]:
    """The labels every object managed for `plan` carries."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PLAN: plan,
        LABEL_PHASE: str(phase),
        LABEL_COMPONENT: component,
    }


def set_condition(conditions: Sequence[Condition], new: Condition) -> list[Condition]:
    """Conditions with `new` in place of its type, like apimachinery's SetStatusCondition:
    lastTransitionTime moves only when the status changes."""
    result: list[Condition] = []
    replaced = False
    for old in conditions:
        if old.type != new.type:
            result.append(old)
            continue
        replaced = True
        if old.status == new.status:
            new = new.model_copy(update={"last_transition_time": old.last_transition_time})
        result.append(new)
    if not replaced:
        result.append(new)
    return result


def record_history(history: Sequence[HistoryEntry], entry: HistoryEntry) -> list[HistoryEntry]:
    """History with `entry` appended, keeping the newest HISTORY_LIMIT entries."""
    return [*history, entry][-HISTORY_LIMIT:]


def _require_unique(values: Sequence[object], what: str) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what}: {value!r}")
        seen.add(value)


def _plain(value: Any) -> Any:
    # kopf hands out Mapping views, not dicts; pydantic wants plain containers.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _location(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) or not path:
            path += f".{part}" if path else part
        else:
            # a map key such as a signal name, or a validator's internal tag
            path += f"[{part!r}]"
    return path


def _describe(err: ValidationError) -> str:
    problems = []
    for e in err.errors(include_url=False):
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "[")))]
        problems.append(f"{_location(loc) or '<root>'}: {e['msg']}")
    return "; ".join(problems)
