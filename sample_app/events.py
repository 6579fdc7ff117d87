"""Phase 4: domain events (user_created, item_created) streamed to Kafka.

Requests never wait for Kafka: events go to a bounded in-process buffer that a
background thread delivers. The producer is created lazily and recreated after a
failure, so a service can start before its brokers and ride out their restarts;
what cannot be delivered is counted in events_publish_errors_total.

An event is a JSON object {type, key, data}: key is the user the event belongs to (the
record's Kafka key, so a user's events share a partition and keep their order) and data
the row as the service answered it. parse_event is its reader, for the consumer.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .metrics import Metrics

log = logging.getLogger(__name__)
# The client logs every failed connection attempt at ERROR; an absent broker is
# already counted in events_publish_errors_total and logged once per event below.
logging.getLogger("kafka").setLevel(logging.CRITICAL)

TOPIC = "phaseshift.events"
MAX_BUFFER = 10_000
EVENT_TYPES = frozenset({"user_created", "item_created"})


class InvalidEvent(ValueError):
    """A record that is not an event this application publishes."""


@dataclass(frozen=True)
class Event:
    type: str
    key: str
    data: dict[str, Any]


def parse_event(value: bytes | None) -> Event:
    """One event as EventPublisher wrote it, or InvalidEvent saying what is wrong."""
    if value is None:
        raise InvalidEvent("an event needs a value")
    try:
        event = json.loads(value)
    except ValueError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise InvalidEvent("an event must be a JSON object")
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidEvent(f"unknown event type {kind!r}")
    key = event.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidEvent(f"{kind} needs a key")
    data = event.get("data")
    if not isinstance(data, dict):
        raise InvalidEvent(f"{kind} needs a data object")
    return Event(str(kind), key, data)


def producer_config(bootstrap: Sequence[str]) -> dict[str, Any]:
    """The KafkaProducer settings: durable enough for domain events, bounded waits."""
    return {
        "bootstrap_servers": list(bootstrap),
        "acks": "all",
        "retries": 3,
        "linger_ms": 5,
        "request_timeout_ms": 5000,
        "max_block_ms": 5000,
        # An event for an absent broker fails after this, rather than sitting in the
        # producer's buffer (where it would also keep close() from finishing).
        "delivery_timeout_ms": 8000,
        "client_id": "phaseshift-sample-app",
        "reconnect_backoff_max_ms": 5000,
        # Newer clients bound their first broker contact separately.
        "bootstrap_timeout_ms": 5000,
    }


class EventPublisher:
    def __init__(self, bootstrap: Sequence[str], metrics: Metrics, topic: str = TOPIC) -> None:
        self.bootstrap = tuple(bootstrap)
        self.metrics = metrics
        self.topic = topic
        self._buffer: queue.Queue[dict[str, Any] | None] = queue.Queue(MAX_BUFFER)
        self._producer: Any = None
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def emit(self, kind: str, key: str, payload: dict[str, Any]) -> None:
        try:
            self._buffer.put_nowait({"type": kind, "key": key, "data": payload})
        except queue.Full:
            self.metrics.event_errors.labels(plan=self.metrics.plan).inc()

    def _producer_or_none(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            supported = getattr(KafkaProducer, "DEFAULT_CONFIG", {})
            config = {k: v for k, v in producer_config(self.bootstrap).items() if k in supported}
            self._producer = KafkaProducer(
                **config,
                key_serializer=lambda k: k.encode(),
                value_serializer=lambda v: json.dumps(v, separators=(",", ":")).encode(),
            )
        return self._producer

    def _run(self) -> None:
        while True:
            event = self._buffer.get()
            if event is None:
                break
            try:
                producer = self._producer_or_none()
                producer.send(self.topic, key=event["key"], value=event).get(timeout=15)
                self.metrics.events_published.labels(plan=self.metrics.plan).inc()
            except Exception as exc:
                # kafka-python raises a wide family of errors (and some plain ones
                # from its bootstrap); all mean the same here: not delivered.
                log.warning("event not delivered to Kafka: %s", exc)
                self.metrics.event_errors.labels(plan=self.metrics.plan).inc()
                self._close_producer()
        self._close_producer()

    def _close_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:
                log.debug("closing the Kafka producer failed", exc_info=True)
            self._producer = None

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._buffer.put(None, timeout=timeout)
        except queue.Full:
            return
        if self._thread.is_alive():
            self._thread.join(timeout)
