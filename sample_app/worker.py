"""`python -m sample_app worker`: consumes the job queue (phase 3+).

A job that fails is acknowledged only after a copy is parked on the retry queue,
which hands it back after an exponential backoff; after MAX_ATTEMPTS, or if it
cannot be parsed at all, it is rejected and RabbitMQ dead-letters it to the DLQ for
a person to inspect. Handlers are idempotent, so a redelivery is harmless.

Jobs are acknowledged by hand after they were handled, at most PREFETCH at a time per
worker; a job a worker held when it died goes back to the queue, and to the DLQ once
it has come back more than DELIVERY_LIMIT times (see queue.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

import pika
import pika.exceptions
from prometheus_client import start_http_server

from .cache import CacheAside, open_cache, user_key
from .config import Settings
from .metrics import Metrics
from .queue import AMQP_ERRORS, DLQ, JOBS, RETRY, connect, declare_topology
from .storage import Store, open_store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BASE_BACKOFF_MS = 500
# Jobs a worker holds unacknowledged at once: enough to keep it busy, few enough that
# a worker that dies hands back little and jobs spread over the workers.
PREFETCH = 20


class PoisonJob(ValueError):
    """A job that will never succeed, however often it is retried."""


def handle_job(job: Any, store: Store, cache: CacheAside) -> None:
    if not isinstance(job, dict):
        raise PoisonJob("a job must be a JSON object")
    kind = job.get("type")
    if kind == "item_created":
        owner = job.get("owner")
        if not isinstance(owner, str) or not owner:
            raise PoisonJob("item_created needs an owner")
        store.refresh_item_count(owner)
        cache.delete(user_key(owner))
    else:
        raise PoisonJob(f"unknown job type {kind!r}")


class Worker:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        store: Store | None = None,
        cache: CacheAside | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        base_backoff_ms: int = BASE_BACKOFF_MS,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_backoff_ms = base_backoff_ms
        if not settings.queue_url:
            raise ValueError("the worker needs QUEUE_URL")
        self.settings = settings
        self.metrics = metrics or Metrics(settings.plan)
        self.store = store or open_store(settings, on_query=self.metrics.query)
        self.cache: CacheAside = cache if cache is not None else open_cache(settings, self.metrics)
        self._stop = threading.Event()

    def _outcome(self, outcome: str) -> None:
        self.metrics.jobs.labels(plan=self.metrics.plan, outcome=outcome).inc()

    def _on_message(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        headers = dict(props.headers or {})
        attempt = int(headers.get("x-attempt", 1))
        try:
            try:
                job = json.loads(body)
            except ValueError as exc:
                raise PoisonJob(f"not JSON: {exc}") from exc
            handle_job(job, self.store, self.cache)
        except PoisonJob as exc:
            log.error("dead-lettering job: %s", exc)
            self._outcome("dead")
            channel.basic_nack(method.delivery_tag, requeue=False)
            return
        except Exception as exc:
            if attempt >= self.max_attempts:
                log.error("job failed %d times, dead-lettering: %s", attempt, exc)
                self._outcome("dead")
                channel.basic_nack(method.delivery_tag, requeue=False)
                return
            delay = self.base_backoff_ms * 2 ** (attempt - 1)
            log.warning("job failed (attempt %d), retrying in %d ms: %s", attempt, delay, exc)
            try:
                # The channel confirms publishes: the job is acknowledged only once its
                # copy is safely on the retry queue.
                channel.basic_publish(
                    exchange="",
                    routing_key=RETRY,
                    body=body,
                    properties=pika.BasicProperties(
                        delivery_mode=2,
                        content_type="application/json",
                        expiration=str(delay),
                        headers={**headers, "x-attempt": attempt + 1},
                    ),
                    mandatory=True,
                )
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as refused:
                # Hand the job back rather than lose it; the queue's delivery limit
                # dead-letters it should the retry queue keep refusing.
                log.error("the retry queue refused a job (%s); handing it back", refused)
                self._outcome("requeued")
                channel.basic_nack(method.delivery_tag, requeue=True)
                return
            self._outcome("retried")
            channel.basic_ack(method.delivery_tag)
            return
        self._outcome("done")
        channel.basic_ack(method.delivery_tag)

    def run(self) -> None:
        """Consume until stop(); reconnects with backoff while the broker is away."""
        assert self.settings.queue_url
        backoff = 0.5
        while not self._stop.is_set():
            conn = None
            try:
                conn = connect(self.settings.queue_url)
                declare_topology(conn)
                channel = conn.channel()
                channel.confirm_delivery()
                channel.basic_qos(prefetch_count=PREFETCH)
                # Manual acknowledgement: a job is acked only after it was handled (or
                # parked on the retry queue), so a worker that dies loses none.
                channel.basic_consume(
                    queue=JOBS, on_message_callback=self._on_message, auto_ack=False
                )
                backoff = 0.5
                next_depth = 0.0
                while not self._stop.is_set():
                    conn.process_data_events(time_limit=0.2)
                    if time.monotonic() >= next_depth:
                        next_depth = time.monotonic() + 2.0
                        depth = channel.queue_declare(queue=JOBS, passive=True).method
                        self.metrics.queue_depth.labels(plan=self.metrics.plan).set(
                            depth.message_count
                        )
            except AMQP_ERRORS as exc:
                log.warning("queue unavailable (%s); reconnecting in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None and conn.is_open:
                    with contextlib.suppress(*AMQP_ERRORS):
                        conn.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.store.close()
        self.cache.close()


def dead_letters(url: str) -> int:
    """How many jobs sit in the dead-letter queue."""
    conn = connect(url)
    try:
        declare_topology(conn)
        channel = conn.channel()
        return int(channel.queue_declare(queue=DLQ, passive=True).method.message_count)
    finally:
        conn.close()


def main(settings: Settings) -> None:
    worker = Worker(settings)
    worker.store.ensure_schema()
    # The worker's own metrics (jobs by outcome, queue depth) for Prometheus and probes.
    start_http_server(settings.port, registry=worker.metrics.registry)
    log.info("worker consuming %s, metrics on :%d", JOBS, settings.port)
    try:
        worker.run()
    finally:
        worker.close()
