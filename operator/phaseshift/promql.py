"""The PromQL of ScalePlans' signals, and how their answers are read: pure, no I/O.

signals.py sends these queries to Prometheus, one per signal per tick; this module only
builds them and turns the vectors that come back into readings.

A signal is a PromQL template from `spec.metrics.signals` in which `$namespace` and `$plan`
stand for the plan's own. The policy needs more than a signal's current value, and all of it
is computed by Prometheus, so a decision survives an operator restart without in-memory
history:

- `min_over_time((q)[P:step])` over the promotion window P: a threshold counts as held only
  if even the window's minimum is above it;
- `max_over_time((q)[D:step])` over the demotion window D: a demotion needs even the
  window's maximum below the lowered threshold;
- `predict_linear((q)[L:step], lead)` when prediction is on;
- `count_over_time` of the same subqueries: a window counts only when the data covers it
  (nearly) fully. Without that, a metric that appeared ten seconds ago would "hold" a
  threshold for a whole minute;
- the age of the newest raw sample behind the signal, so the policy can treat data older
  than `stalenessSeconds` as missing.

Each statistic is tagged with a `phaseshift_stat` label by `label_replace` and the lot is
joined with `or` into ONE expression per signal.

Batching: plans whose signal has the same Prometheus URL, template text and windows form a
group evaluated by that one expression. Every `label="$plan"` / `label="$namespace"` matcher
becomes a regex matcher over the group's names (`plan=~"a|b|c"`, regex metacharacters
escaped) and the answer is split by those labels, so 1,000 plans sharing the default signals
cost four requests per tick. This needs templates that keep the labels their placeholders
match on, as the defaults do with `sum by (namespace, plan) (...)`. A custom template is
evaluated per plan (one request per plan and signal) when it uses a placeholder anywhere but
in an equality matcher, or when its answer turns out not to carry the labels; the latter is
remembered by whoever fetches (signals.fetch_signals' `ungrouped`).

Freshness: the age is computed from `timestamp()` of the template's own selectors that match
on the plan's labels. A template without such a selector gets no age; its data then counts as
missing only when Prometheus drops it (staleness markers after a failed scrape, or its
lookback delta).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    # Only for annotations: api.py fills its own queries in with fill_for_plan.
    from phaseshift.api import ScalePlan

STAT_LABEL = "phaseshift_stat"
# A window counts as covered when at least this share of its subquery points have data.
COVERAGE = 0.9
# A window's subquery has at least this many points (unless that is finer than 1s).
POINTS_PER_WINDOW = 10

_PLACEHOLDER = re.compile(r"\$(plan|namespace)\b")
_PLACEHOLDER_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"\$(plan|namespace)"')
# In PromQL braces only ever delimit a selector's label matchers.
_SELECTOR = re.compile(r"(?:[A-Za-z_:][A-Za-z0-9_:]*)?\{[^{}]*\}")
_REGEX_METACHARACTERS = frozenset(r".+*?()|[]{}^$\\")


class PlanKey(NamedTuple):
    namespace: str
    name: str

    @classmethod
    def of(cls, plan: ScalePlan) -> PlanKey:
        return cls(plan.namespace, plan.name)


@dataclass(frozen=True)
class SignalReading:
    """One signal of one plan at one tick, as Prometheus computed it; None where it had no
    data. Values may be NaN or infinite (e.g. a quantile of no requests): judging them is
    the policy's business."""

    current: float | None
    window_min: float | None
    """Minimum over the promotion window (the current value when that window is 0)."""
    window_max: float | None
    """Maximum over the demotion window (the current value when that window is 0)."""
    predicted: float | None
    """predict_linear `leadSeconds` ahead; None when prediction is off or lacks history."""
    covered: bool
    """The promotion window is (nearly) fully covered by data."""
    demotion_covered: bool
    """The demotion window is (nearly) fully covered by data."""
    age_seconds: float | None = None
    """Age of the newest sample behind the signal; None when the template gives no way to
    tell."""


@dataclass(frozen=True)
class PlanSignals:
    """Everything fetched for one plan in one tick."""

    readings: dict[str, SignalReading]
    fetched_at: datetime
    errors: dict[str, str] = field(default_factory=dict)
    """Signal name -> why it could not be read (unreachable Prometheus, a PromQL error)."""

    @property
    def error(self) -> str | None:
        """All distinct failures of this tick in one message, or None."""
        distinct = list(dict.fromkeys(self.errors.values()))
        return "; ".join(distinct) if distinct else None


SignalSnapshot = dict[PlanKey, PlanSignals]


@dataclass(frozen=True)
class Windows:
    """The windows, in whole seconds, that every statistic of a signal is computed over."""

    promotion: int
    demotion: int
    lead: int
    lookback: int
    interval: int
    """The evaluation interval: the finest step a window is sampled at."""

    @classmethod
    def of(cls, plan: ScalePlan) -> Windows:
        policy = plan.spec.policy
        promotion = policy.promotion.stabilization_seconds
        demotion = policy.demotion.stabilization_seconds if policy.demotion.enabled else 0
        lead = policy.promotion.predictive.lead_seconds
        lookback = policy.promotion.predictive.lookback_seconds if lead else 0
        return cls(promotion, demotion, lead, lookback, policy.evaluation_interval_seconds)

    def step(self, window: int) -> int:
        """The subquery step of a window: at least POINTS_PER_WINDOW points in it, and never
        finer than the operator looks (one evaluation interval) nor than 1s. Sampling a long
        window at the interval rather than at the shortest window's step keeps the cost of a
        900s demotion window at 60 evaluations by default, not 150."""
        return max(1, min(self.interval, window // POINTS_PER_WINDOW))

    def covers(self, count: float | None, window: int) -> bool:
        if count is None or not math.isfinite(count):
            return False
        return count >= max(1, math.floor(COVERAGE * window / self.step(window)))


# ------------------------------------------------------------------ building the queries


@dataclass(frozen=True)
class TemplateShape:
    """Which labels a template's placeholders match on; None when it cannot be batched."""

    plan_label: str | None
    namespace_label: str | None

    @property
    def batchable(self) -> bool:
        return self.plan_label is not None and self.namespace_label is not None

    @classmethod
    def of(cls, template: str) -> TemplateShape:
        matchers = _PLACEHOLDER_MATCHER.findall(template)
        if len(matchers) != len(_PLACEHOLDER.findall(template)):
            return cls(None, None)
        labels = {
            var: {label for label, matched in matchers if matched == var}
            for var in ("plan", "namespace")
        }
        if any(len(names) != 1 for names in labels.values()):
            return cls(None, None)
        return cls(labels["plan"].pop(), labels["namespace"].pop())


def regex_alternation(values: Iterable[str]) -> str:
    """A PromQL string body matching exactly `values` as an (anchored) RE2 regex."""
    escaped = ("".join("\\" + c if c in _REGEX_METACHARACTERS else c for c in v) for v in values)
    return promql_string_body("|".join(sorted(escaped)))


def promql_string_body(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def fill_for_plan(template: str, key: PlanKey) -> str:
    """The template for one plan: placeholders replaced by its namespace and name."""
    names = {"plan": promql_string_body(key.name), "namespace": promql_string_body(key.namespace)}
    return _PLACEHOLDER.sub(lambda m: names[m.group(1)], template)


def fill_for_group(template: str, shape: TemplateShape, keys: Iterable[PlanKey]) -> str:
    """The template for several plans: each placeholder matcher turned into a regex one."""
    keys = list(keys)
    alternations = {
        "plan": regex_alternation({k.name for k in keys}),
        "namespace": regex_alternation({k.namespace for k in keys}),
    }
    return _PLACEHOLDER_MATCHER.sub(
        lambda m: f'{m.group(1)}=~"{alternations[m.group(2)]}"', template
    )


def combined_query(template: str, windows: Windows, keep: Sequence[str] = ()) -> str:
    """Every statistic of one signal in one expression, each tagged with STAT_LABEL.

    Works on the template (placeholders intact) so one text serves a group and a plan;
    `keep` names the labels the freshness aggregation keeps (the placeholder labels).
    """
    stats: dict[str, str] = {"current": template}

    def over(window: int) -> str:
        return f"({template})[{window}s:{windows.step(window)}s]"

    if windows.promotion:
        stats["windowMin"] = f"min_over_time({over(windows.promotion)})"
        stats["promotionCount"] = f"count_over_time({over(windows.promotion)})"
    if windows.demotion:
        stats["windowMax"] = f"max_over_time({over(windows.demotion)})"
        stats["demotionCount"] = f"count_over_time({over(windows.demotion)})"
    if windows.lead:
        stats["predicted"] = f"predict_linear({over(windows.lookback)}, {windows.lead})"
        stats["lookbackCount"] = f"count_over_time({over(windows.lookback)})"
    freshness = _freshness(template, keep)
    if freshness:
        stats["age"] = freshness
    return " or ".join(
        f'label_replace({expr}, "{STAT_LABEL}", "{name}", "", "")' for name, expr in stats.items()
    )


def _freshness(template: str, keep: Sequence[str]) -> str | None:
    """Seconds since the newest raw sample of the template's plan-specific selectors."""
    selectors = list(dict.fromkeys(s for s in _SELECTOR.findall(template) if "$plan" in s))
    if not selectors:
        return None
    # A distinct tag per selector, so `or` keeps series whose other labels coincide.
    newest = " or ".join(
        f'label_replace(timestamp({s}), "{STAT_LABEL}", "{i}", "", "")'
        for i, s in enumerate(selectors)
    )
    by = f" by ({', '.join(keep)})" if keep else ""
    return f"time() - max{by} ({newest})"


@dataclass(frozen=True)
class SignalGroup:
    """Plans whose signal shares Prometheus, template and windows: one query serves them."""

    url: str
    template: str
    windows: Windows
    timeout_seconds: int
    members: tuple[tuple[PlanKey, str], ...]
    """(plan, signal name) pairs; a plan may use one template under two names."""

    @property
    def shape(self) -> TemplateShape:
        return TemplateShape.of(self.template)

    @property
    def plans(self) -> list[PlanKey]:
        return list(dict.fromkeys(key for key, _ in self.members))

    @property
    def batched(self) -> bool:
        """One query can serve the group (unless its answer turns out to drop the labels)."""
        return len(self.plans) > 1 and self.shape.batchable

    def batch_query(self) -> str:
        shape = self.shape
        assert shape.plan_label is not None and shape.namespace_label is not None
        keep = (shape.namespace_label, shape.plan_label)
        return fill_for_group(combined_query(self.template, self.windows, keep), shape, self.plans)

    def plan_query(self, key: PlanKey) -> str:
        return fill_for_plan(combined_query(self.template, self.windows), key)


def group_signals(plans: Iterable[ScalePlan]) -> list[SignalGroup]:
    """The queries one tick needs: one group per distinct (URL, template, windows)."""
    members: dict[tuple[str, str, Windows], list[tuple[PlanKey, str]]] = {}
    timeouts: dict[tuple[str, str, Windows], int] = {}
    for plan in plans:
        metrics = plan.spec.metrics
        windows = Windows.of(plan)
        for name, template in metrics.signals.items():
            group_key = (metrics.prometheus_url.rstrip("/"), template, windows)
            members.setdefault(group_key, []).append((PlanKey.of(plan), name))
            timeouts[group_key] = max(timeouts.get(group_key, 0), metrics.query_timeout_seconds)
    return [
        SignalGroup(url, template, windows, timeouts[(url, template, windows)], tuple(pairs))
        for (url, template, windows), pairs in members.items()
    ]


# ------------------------------------------------------------------- reading the answers


class LabelsDropped(Exception):
    """A batched answer lacked the placeholder labels, so it cannot be split by plan."""


class AmbiguousAnswer(Exception):
    """A signal gave several series for one plan and statistic."""


Stats = dict[str, float]


def split_by_plan(result: Sequence[dict[str, Any]], shape: TemplateShape) -> dict[PlanKey, Stats]:
    """A batched answer as plan -> statistic -> value."""
    by_plan: dict[PlanKey, Stats] = {}
    for series in result:
        labels = series["metric"]
        if shape.namespace_label not in labels or shape.plan_label not in labels:
            raise LabelsDropped
        key = PlanKey(labels[shape.namespace_label], labels[shape.plan_label])
        _put(by_plan.setdefault(key, {}), series)
    return by_plan


def stats_of_one_plan(result: Sequence[dict[str, Any]]) -> Stats:
    stats: Stats = {}
    for series in result:
        _put(stats, series)
    return stats


def _put(stats: Stats, series: dict[str, Any]) -> None:
    stat = series["metric"].get(STAT_LABEL, "")
    if stat in stats:
        raise AmbiguousAnswer(
            f"the signal yields more than one series per plan ({series['metric']}); "
            "aggregate it, e.g. with sum by (namespace, plan)"
        )
    stats[stat] = float(series["value"][1])


def reading_from(stats: Stats, windows: Windows) -> SignalReading:
    current = stats.get("current")
    if windows.promotion:
        window_min = stats.get("windowMin")
        covered = windows.covers(stats.get("promotionCount"), windows.promotion)
    else:
        window_min, covered = current, current is not None
    if windows.demotion:
        window_max = stats.get("windowMax")
        demotion_covered = windows.covers(stats.get("demotionCount"), windows.demotion)
    else:
        window_max, demotion_covered = current, current is not None
    # A trend fitted on a partial lookback (a series that just appeared) is not a trend.
    lookback_covered = windows.covers(stats.get("lookbackCount"), windows.lookback)
    predicted = stats.get("predicted") if windows.lead and lookback_covered else None
    return SignalReading(
        current=current,
        window_min=window_min,
        window_max=window_max,
        predicted=predicted,
        covered=covered,
        demotion_covered=demotion_covered,
        age_seconds=stats.get("age"),
    )


def canary_queries(plan: ScalePlan, track: str = "canary") -> dict[str, str]:
    """The plan's canary-analysis PromQL with $namespace, $plan and $track filled in."""
    metrics = plan.spec.rollout.canary.metrics
    key = PlanKey.of(plan)
    return {
        name: fill_for_plan(template, key).replace("$track", promql_string_body(track))
        for name, template in (
            ("errorRate", metrics.error_rate),
            ("p95LatencySeconds", metrics.p95_latency_seconds),
        )
    }
