"""Signals of ScalePlans, read from Prometheus in one query per signal per tick: the client.

phaseshift.promql builds the queries and reads their answers; this module sends them,
turns what can go wrong on the way into messages, and remembers (in the caller's
`ungrouped` set) the templates whose batched answers dropped the plans' labels.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from phaseshift.api import ScalePlan
from phaseshift.promql import (
    AmbiguousAnswer,
    LabelsDropped,
    PlanKey,
    PlanSignals,
    SignalGroup,
    SignalReading,
    Stats,
    canary_queries,
    fill_for_plan,
    group_signals,
    reading_from,
    split_by_plan,
    stats_of_one_plan,
)
from phaseshift.rollout import CanaryReading

# At most this many templates are remembered as ungrouped; past it the memory starts over.
UNGROUPED_LIMIT = 1024


class QueryClient(Protocol):
    def custom_query(
        self, query: str, params: dict[str, Any] | None = None, timeout: int | None = None
    ) -> Any: ...

    def close(self) -> None: ...


ClientFactory = Callable[[str], QueryClient]


class QueryFailed(Exception):
    pass


def default_client(url: str) -> PrometheusConnect:
    # One quick retry for a dropped keep-alive connection; an outage should surface as
    # MetricsUnavailable within the tick, not after the library's default backoff.
    retry = Retry(total=1, backoff_factor=0, status_forcelist=[], raise_on_status=False)
    return PrometheusConnect(url, retry=retry)


def fetch_signals(
    plans: Sequence[ScalePlan],
    now: datetime,
    *,
    client_factory: ClientFactory = default_client,
    ungrouped: set[str] | None = None,
) -> dict[PlanKey, PlanSignals]:
    """Every signal of every plan at `now`, in one query per signal group.

    `ungrouped` is the caller's memory, kept from one call to the next, of templates whose
    batched answers dropped the plans' labels: they are evaluated per plan straight away.
    Without it, such a template costs its batched query again on every call.

    Never raises for Prometheus's sake: an unreachable server or a refused query becomes
    the affected signals' entry in `PlanSignals.errors`, naming the signal's query (filled
    in for the plan) and what went wrong, with the server's own message when it sent one.
    """
    readings: dict[PlanKey, dict[str, SignalReading]] = {PlanKey.of(p): {} for p in plans}
    errors: dict[PlanKey, dict[str, str]] = {PlanKey.of(p): {} for p in plans}
    templates = {
        (PlanKey.of(p), name): template
        for p in plans
        for name, template in p.spec.metrics.signals.items()
    }
    clients: dict[str, QueryClient] = {}
    ungrouped = set() if ungrouped is None else ungrouped
    try:
        for group in group_signals(plans):
            if group.url not in clients:
                clients[group.url] = client_factory(group.url)
            client = clients[group.url]
            for key, name, outcome in _evaluate(client, group, now, ungrouped):
                if isinstance(outcome, SignalReading):
                    readings[key][name] = outcome
                else:
                    filled = fill_for_plan(templates[(key, name)], key)
                    errors[key][name] = f"signal {name} ({filled}): {outcome}"
    finally:
        for client in clients.values():
            client.close()
    return {key: PlanSignals(readings[key], now, errors[key]) for key in readings}


def _evaluate(
    client: QueryClient, group: SignalGroup, now: datetime, ungrouped: set[str]
) -> Iterator[tuple[PlanKey, str, SignalReading | str]]:
    """(plan, signal, reading or error message) for every member of the group."""
    stats_by_plan: dict[PlanKey, Stats | str] = {}
    if group.batched and group.template not in ungrouped:
        try:
            result = _query(client, group, group.batch_query(), now)
            split = split_by_plan(result, group.shape)
            stats_by_plan = {key: split.get(key, {}) for key in group.plans}
        except QueryFailed as failed:
            stats_by_plan = dict.fromkeys(group.plans, str(failed))
        except AmbiguousAnswer as ambiguous:
            stats_by_plan = dict.fromkeys(group.plans, str(ambiguous))
        except LabelsDropped:
            if len(ungrouped) >= UNGROUPED_LIMIT:
                ungrouped.clear()
            ungrouped.add(group.template)
    for key in group.plans:
        if key in stats_by_plan:
            continue
        try:
            stats_by_plan[key] = stats_of_one_plan(
                _query(client, group, group.plan_query(key), now)
            )
        except (QueryFailed, AmbiguousAnswer) as failed:
            stats_by_plan[key] = str(failed)
    for key, name in group.members:
        stats = stats_by_plan[key]
        yield key, name, stats if isinstance(stats, str) else reading_from(stats, group.windows)


def _query(
    client: QueryClient, group: SignalGroup, query: str, now: datetime
) -> list[dict[str, Any]]:
    return instant_query(client, group.url, query, now, group.timeout_seconds)


def instant_query(
    client: QueryClient, url: str, query: str, now: datetime, timeout: int
) -> list[dict[str, Any]]:
    """The vector `query` evaluates to at `now`; QueryFailed says why there is none."""
    params = {"time": f"{now.timestamp():.3f}", "timeout": f"{timeout}s"}
    try:
        result = client.custom_query(query, params=params, timeout=timeout)
    except PrometheusApiClientException as e:
        raise QueryFailed(f"Prometheus at {url} rejected the query: {server_message(e)}") from e
    except (requests.JSONDecodeError, KeyError, TypeError) as e:
        # A proxy or another server on that URL: 200, but not the Prometheus API.
        raise QueryFailed(f"{url} did not answer like the Prometheus API ({e!r})") from e
    except requests.Timeout as e:
        raise QueryFailed(f"Prometheus at {url} did not answer within {timeout}s") from e
    except requests.RequestException as e:
        # The exception's own text repeats the whole URL, query included; keep it short.
        raise QueryFailed(f"Prometheus at {url} is unreachable ({type(e).__name__})") from e
    if not isinstance(result, list):
        raise QueryFailed(f"Prometheus at {url} answered with a scalar, not a vector")
    return result


def fetch_canary(
    plan: ScalePlan, now: datetime, *, client_factory: ClientFactory = default_client
) -> CanaryReading:
    """The canary track's error rate and p95 latency at `now`, for one analysis check.
    Never raises for Prometheus's sake: what went wrong is the reading's `error`."""
    url = plan.spec.metrics.prometheus_url
    timeout = plan.spec.metrics.query_timeout_seconds
    values: dict[str, float | None] = {}
    client = client_factory(url)
    try:
        for name, query in canary_queries(plan).items():
            result = instant_query(client, url, query, now, timeout)
            if len(result) > 1:
                return CanaryReading(None, None, f"{name} query returned {len(result)} series")
            value = float(result[0]["value"][1]) if result else math.nan
            values[name] = None if math.isnan(value) else value
    except QueryFailed as failed:
        return CanaryReading(None, None, str(failed))
    finally:
        client.close()
    return CanaryReading(values.get("errorRate"), values.get("p95LatencySeconds"))


def server_message(error: PrometheusApiClientException) -> str:
    """Prometheus's own `error` text from the client's 'HTTP Status Code N (b'{...}')'."""
    text = str(error)
    match = re.fullmatch(r"HTTP Status Code (\d+) \((b?['\"].*['\"])\)", text, re.DOTALL)
    if not match:
        return text
    try:
        body = ast.literal_eval(match.group(2))
        payload = json.loads(body)
    except (ValueError, SyntaxError):
        return text
    if isinstance(payload, dict) and "error" in payload:
        return f"{payload.get('errorType', 'error')}: {payload['error']} (HTTP {match.group(1)})"
    return text
