"""Phase 3: background jobs over RabbitMQ.

Topology (quorum queues on the default exchange, so a job survives the loss of one
node of the three-node cluster):
  phaseshift.jobs        work queue; rejected jobs, and jobs handed back more than
                         DELIVERY_LIMIT times (a worker dying on them), dead-letter to
                         the DLQ
  phaseshift.jobs.retry  holds a failed job for its backoff (per-message TTL), then
                         dead-letters it back to phaseshift.jobs
  phaseshift.jobs.dlq    jobs that failed too often or could not be parsed

Both dead-letter paths are at-least-once (RabbitMQ 3.10+): the source queue keeps a
dead-lettered job until its target has confirmed it, so a job is not lost between
queues while a target's leader moves. That strategy needs `x-overflow: reject-publish`
on the source queue (without a length limit it never rejects anything).

Queues declared by an older version as classic queues cannot be redeclared with
these arguments (RabbitMQ answers PRECONDITION_FAILED); `declare_topology` then keeps
using them as they are and logs how to migrate them.

The web process never blocks on the broker: jobs go to an in-process outbox that a
publisher thread drains with publisher confirms. While the broker is unreachable the
jobs wait there and are published once it returns. The outbox is memory, so a
process that dies during an outage loses its pending jobs; the jobs only maintain
derived data (per-user counts) that the next job for that user recomputes.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from typing import Any

import pika
import pika.exceptions

from .metrics import Metrics

log = logging.getLogger(__name__)

JOBS = "phaseshift.jobs"
RETRY = "phaseshift.jobs.retry"
DLQ = "phaseshift.jobs.dlq"
MAX_OUTBOX = 100_000

AMQP_ERRORS: tuple[type[BaseException], ...] = (pika.exceptions.AMQPError, OSError)


def connect(url: str) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.socket_timeout = 3
    params.blocked_connection_timeout = 10
    params.connection_attempts = 1
    params.heartbeat = 30
    return pika.BlockingConnection(params)


# A job handed back to the queue more often than this without being acknowledged (its
# worker died or disconnected while holding it) goes to the DLQ instead of round again.
# A worker's own failures go through the retry queue, so they do not count here.
DELIVERY_LIMIT = 20
PRECONDITION_FAILED = 406


def _dead_letter_to(target: str) -> dict[str, Any]:
    return {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


# Dead-letter targets come before the queues that dead-letter to them.
QUEUES: dict[str, dict[str, Any]] = {
    DLQ: {"x-queue-type": "quorum"},
    JOBS: {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT, **_dead_letter_to(DLQ)},
    RETRY: {"x-queue-type": "quorum", **_dead_letter_to(JOBS)},
}


def declare_topology(conn: pika.BlockingConnection) -> list[str]:
    """Declare the job queues on a channel of their own; return the names of those that
    already existed with other arguments and are used as they are.

    Such a queue (a classic one declared by an older version) makes RabbitMQ close the
    declaring channel with PRECONDITION_FAILED; it is then declared passively, so the
    app keeps publishing and consuming, and an error says how to replace it.
    """
    kept: list[str] = []
    channel = conn.channel()
    try:
        for name, arguments in QUEUES.items():
            try:
                channel.queue_declare(queue=name, durable=True, arguments=arguments)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != PRECONDITION_FAILED:
                    raise
                log.error(
                    "queue %s exists with other arguments than this version declares (%s); "
                    "it is used as it is, and if it is a classic queue its jobs do not "
                    "survive the loss of its node. To replace it, let it empty (stop the "
                    "web processes, let the workers drain the jobs; take dead letters "
                    "out by hand), delete it with `rabbitmqctl delete_queue --if-empty %s` "
                    "and restart the app, which declares it anew",
                    name,
                    exc.reply_text,
                    name,
                )
                channel = conn.channel()
                channel.queue_declare(queue=name, passive=True)
                kept.append(name)
    finally:
        if channel.is_open:
            channel.close()
    return kept


def encode(job: dict[str, Any]) -> bytes:
    return json.dumps(job, separators=(",", ":")).encode()


class JobPublisher:
    """Publishes jobs from a background thread, holding them while the broker is away."""

    def __init__(self, url: str, metrics: Metrics, depth_interval: float = 2.0) -> None:
        self.url = url
        self.metrics = metrics
        self.depth_interval = depth_interval
        self._outbox: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._conn: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._backoff = 0.5
        self._thread = threading.Thread(target=self._run, name="job-publisher", daemon=True)
        metrics.on_scrape(self._report_pending)

    def start(self) -> None:
        self._thread.start()

    def publish(self, job: dict[str, Any]) -> None:
        with self._cond:
            if len(self._outbox) >= MAX_OUTBOX:
                # Dropping the oldest keeps memory bounded; its effect is recomputed by
                # any later job for the same user.
                self._outbox.popleft()
                self.metrics.jobs.labels(plan=self.metrics.plan, outcome="dropped").inc()
            self._outbox.append(encode(job))
            self._cond.notify()

    @property
    def pending(self) -> int:
        return len(self._outbox)

    def _report_pending(self) -> None:
        self.metrics.queue_pending.labels(plan=self.metrics.plan).set(self.pending)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the outbox is empty (tests and graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._outbox:
                return True
            time.sleep(0.05)
        return not self._outbox

    def stop(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _ensure_channel(self) -> Any:
        if self._channel is None or self._conn is None or self._conn.is_closed:
            self._conn = connect(self.url)
            declare_topology(self._conn)
            channel = self._conn.channel()
            channel.confirm_delivery()
            self._channel = channel
        return self._channel

    def _drop_connection(self) -> None:
        if self._conn is not None and self._conn.is_open:
            with contextlib.suppress(*AMQP_ERRORS):
                self._conn.close()
        self._conn = None
        self._channel = None

    def _refresh_depth(self) -> None:
        channel = self._ensure_channel()
        depth = channel.queue_declare(queue=JOBS, passive=True).method.message_count
        self.metrics.queue_depth.labels(plan=self.metrics.plan).set(depth)

    def _run(self) -> None:
        next_depth = 0.0
        while True:
            with self._cond:
                if not self._outbox and not self._stop:
                    self._cond.wait(timeout=0.5)
                if self._stop and not self._outbox:
                    break
                body = self._outbox[0] if self._outbox else None
            try:
                if body is not None:
                    channel = self._ensure_channel()
                    channel.basic_publish(
                        exchange="",
                        routing_key=JOBS,
                        body=body,
                        properties=pika.BasicProperties(
                            delivery_mode=2, content_type="application/json"
                        ),
                        mandatory=True,
                    )
                    with self._cond:
                        # Only now, after the broker confirmed it, may the job leave.
                        if self._outbox and self._outbox[0] is body:
                            self._outbox.popleft()
                    self.metrics.queue_published.labels(plan=self.metrics.plan).inc()
                    self._backoff = 0.5
                elif self._conn is not None and self._conn.is_open:
                    self._conn.process_data_events(0)
                if time.monotonic() >= next_depth:
                    next_depth = time.monotonic() + self.depth_interval
                    self._refresh_depth()
            except AMQP_ERRORS as exc:
                if body is not None:
                    self.metrics.queue_publish_errors.labels(plan=self.metrics.plan).inc()
                log.warning("queue unavailable (%s); %d job(s) held", exc, self.pending)
                self._drop_connection()
                with self._cond:
                    if not self._stop:
                        self._cond.wait(timeout=self._backoff)
                    elif body is not None:
                        break
                self._backoff = min(self._backoff * 2, 5.0)
        self._drop_connection()
