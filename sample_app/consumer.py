"""`python -m sample_app consume`: reads the domain events of phase 4 from Kafka.

The consumers of one plan form a consumer group, so the topic's partitions are
shared among them. Each event is counted by type in events_consumed_total and the
group's backlog is exported as events_consumer_lag, on the consumer's own /metrics.
Offsets are committed only after a batch is handled (at-least-once); a redelivered
offset this process has already handled is recognised and not counted twice. An
event that can never be handled (not JSON, unknown type) is counted as `invalid`
and committed past, so one bad record cannot stall a partition. An unreachable
broker is retried with backoff and counted in events_consume_errors_total.

With Cassandra configured (CASSANDRA_CONTACT_POINTS), handling an event means writing
its row of the activity feed. A row that cannot be written stops its partition there:
the consumer seeks back to it, commits only what precedes it and retries after a
backoff (feed_errors_total), so an outage delays the feed and loses nothing. Rows are
keyed by the event, so writing one again after a redelivery changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import start_http_server

from .config import Settings
from .events import EVENT_TYPES, TOPIC, InvalidEvent, parse_event
from .feed import ActivityFeed, ActivityRow, FeedUnavailable, activity_row
from .metrics import Metrics

log = logging.getLogger(__name__)

GROUP = "phaseshift-event-consumer"
INVALID = "invalid"
DUPLICATE = "duplicate"
MAX_BACKOFF = 30.0
LAG_EVERY_SECONDS = 5.0


class Record(Protocol):
    """The parts of a kafka-python ConsumerRecord the handler reads."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


class FeedWriter(Protocol):
    """What the handler needs of the activity feed (feed.ActivityFeed)."""

    def write(self, row: ActivityRow) -> None: ...


class Ledger:
    """The next offset to handle, per partition: what makes a redelivery harmless.

    After a failed commit the group hands the same records out again; those this
    process has already handled are recognised by their offset. A partition taken
    away by a rebalance is forgotten, its new owner starts from the committed offset.
    """

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def seen(self, record: Record) -> bool:
        return record.offset < self._next.get((record.topic, record.partition), -1)

    def done(self, record: Record) -> None:
        key = (record.topic, record.partition)
        self._next[key] = max(self._next.get(key, -1), record.offset + 1)

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        for key in partitions:
            self._next.pop(key, None)


def handle_event(
    record: Record, ledger: Ledger, metrics: Metrics, feed: FeedWriter | None = None
) -> str:
    """Handle one record; returns the event type, `invalid` or `duplicate`.

    Raises FeedUnavailable, leaving the record unhandled, when its feed row could not be
    written: the caller reads it again later.
    """
    if ledger.seen(record):
        return DUPLICATE
    try:
        event = parse_event(record.value)
        # An event the feed cannot hold (no id, no time) never will: like one that is
        # not JSON, it is passed rather than retried.
        row = activity_row(event) if feed is not None else None
    except InvalidEvent as exc:
        log.error("skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        outcome = INVALID
    else:
        if feed is not None and row is not None:
            try:
                feed.write(row)
            except FeedUnavailable:
                metrics.feed_errors.labels(plan=metrics.plan).inc()
                raise
            metrics.feed_writes.labels(plan=metrics.plan).inc()
        outcome = event.type
    metrics.events_consumed.labels(plan=metrics.plan, type=outcome).inc()
    ledger.done(record)
    return outcome


def consumer_config(bootstrap: Sequence[str]) -> dict[str, Any]:
    """The KafkaConsumer settings: a group, manual commits, bounded waits."""
    return {
        "bootstrap_servers": list(bootstrap),
        "group_id": GROUP,
        "client_id": "phaseshift-event-consumer",
        # Offsets are committed by hand, after the batch is handled.
        "enable_auto_commit": False,
        # A new group reads the stream from its start, not only what arrives later.
        "auto_offset_reset": "earliest",
        "max_poll_records": 500,
        "request_timeout_ms": 30000,
        "reconnect_backoff_max_ms": 5000,
        "bootstrap_timeout_ms": 5000,
    }


def lag(end_offsets: Mapping[Any, int | None], positions: Mapping[Any, int]) -> int:
    """Events between each partition's position and its end, summed."""
    return sum(max(0, (end or 0) - positions.get(tp, 0)) for tp, end in end_offsets.items())


class Consumer:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("the consumer needs KAFKA_BOOTSTRAP")
        self.settings = settings
        self.metrics = metrics or Metrics(settings.plan)
        self.ledger = Ledger()
        self.feed = ActivityFeed.from_settings(settings)
        self._stop = threading.Event()
        self.metrics.event_consume_errors.labels(plan=self.metrics.plan)
        self.metrics.consumer_lag.labels(plan=self.metrics.plan).set(0)
        for kind in sorted(EVENT_TYPES):
            self.metrics.events_consumed.labels(plan=self.metrics.plan, type=kind)

    def _error(self) -> None:
        self.metrics.event_consume_errors.labels(plan=self.metrics.plan).inc()

    def _connect(self) -> Any:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        ledger = self.ledger

        class Forget(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                ledger.forget((tp.topic, tp.partition) for tp in revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                pass

        supported = getattr(KafkaConsumer, "DEFAULT_CONFIG", {})
        config = consumer_config(self.settings.kafka_bootstrap)
        consumer = KafkaConsumer(**{k: v for k, v in config.items() if k in supported})
        consumer.subscribe([TOPIC], listener=Forget())
        return consumer

    def _handle(self, consumer: Any, batches: Mapping[Any, Sequence[Record]]) -> bool:
        """Handle a poll's records; False if a feed row could not be written. Each
        partition stops at such a record, and the consumer is moved back to it, so the
        commit that follows stops there too and the next poll starts with it."""
        written = True
        for tp, records in batches.items():
            for record in records:
                try:
                    handle_event(record, self.ledger, self.metrics, self.feed)
                except FeedUnavailable as exc:
                    log.warning(
                        "feed row of %s[%d]@%d not written: %s",
                        record.topic,
                        record.partition,
                        record.offset,
                        exc,
                    )
                    consumer.seek(tp, record.offset)
                    written = False
                    break
        return written

    def _observe_lag(self, consumer: Any) -> None:
        assigned = consumer.assignment()
        if not assigned:
            return
        positions = {tp: consumer.position(tp) for tp in assigned}
        value = lag(consumer.end_offsets(list(assigned)), positions)
        self.metrics.consumer_lag.labels(plan=self.metrics.plan).set(value)

    def run(self) -> None:
        """Consume until stop(); reconnects with backoff while the brokers are away."""
        try:
            self._consume()
        finally:
            if self.feed is not None:
                self.feed.close()

    def _consume(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = self._connect()
                backoff = 0.5
                feed_backoff = 0.5
                next_lag = 0.0
                while not self._stop.is_set():
                    batches = consumer.poll(timeout_ms=500)
                    written = self._handle(consumer, batches)
                    if batches:
                        consumer.commit()
                    if time.monotonic() >= next_lag:
                        next_lag = time.monotonic() + LAG_EVERY_SECONDS
                        self._observe_lag(consumer)
                    if written:
                        feed_backoff = 0.5
                    else:
                        # Kafka is fine, Cassandra is not: keep the group membership
                        # (the client heartbeats meanwhile) and try the row again later.
                        self._stop.wait(feed_backoff)
                        feed_backoff = min(feed_backoff * 2, MAX_BACKOFF)
            except Exception as exc:
                # kafka-python raises a wide family of errors (no brokers, a commit
                # refused after a rebalance, timeouts); each means: reconnect and
                # resume from the committed offsets.
                self._error()
                log.warning("event stream unavailable (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                if consumer is not None:
                    try:
                        consumer.close(autocommit=False)
                    except Exception:
                        log.debug("closing the Kafka consumer failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()


def main(settings: Settings) -> None:
    consumer = Consumer(settings)
    # The consumer's own metrics (events by type, lag, errors) for Prometheus and probes.
    start_http_server(settings.port, registry=consumer.metrics.registry)
    log.info("consuming %s as group %s, metrics on :%d", TOPIC, GROUP, settings.port)
    consumer.run()
