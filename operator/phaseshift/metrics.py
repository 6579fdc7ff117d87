"""The operator's own Prometheus metrics, served on /metrics by `phaseshift run`."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.evaluations = Counter(
            "phaseshift_evaluations_total",
            "Policy evaluations, per plan.",
            ["namespace", "plan"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "phaseshift_decisions_total",
            "Policy decisions by outcome (Promote, Demote, Hold, MetricsUnavailable, ...).",
            ["outcome"],
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "phaseshift_transition_step_duration_seconds",
            "Time spent running one transition step.",
            ["step"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.phase = Gauge(
            "phaseshift_plan_phase",
            "The phase each ScalePlan runs in.",
            ["namespace", "plan"],
            registry=self.registry,
        )
        self.writes = Counter(
            "phaseshift_api_writes_total",
            "Write calls to the Kubernetes API, by verb.",
            ["verb"],
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "phaseshift_tick_duration_seconds",
            "Duration of one evaluation tick over all plans.",
            registry=self.registry,
        )
