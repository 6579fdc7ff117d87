"""Phase 3 jobs over a real RabbitMQ: publish, consume, retry, dead-letter, outage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
import psycopg
from conftest import PgCluster, PgDb, RabbitMQ, eventually
from sampleapp_helpers import client, metric, new_user, running, settings

from sample_app.metrics import Metrics
from sample_app.queue import DLQ, JOBS, declare_topology
from sample_app.worker import Worker, dead_letters


@contextmanager
def working(worker: Worker) -> Iterator[Worker]:
    with running(worker):
        yield worker
    worker.close()


def jobs_done(worker: Worker, outcome: str = "done") -> float:
    return worker.metrics.jobs.labels(plan=worker.metrics.plan, outcome=outcome)._value.get()


def test_a_write_publishes_a_job_the_worker_completes(pg_db: PgDb, amqp_url: str) -> None:
    env = {"DATABASE_URL": pg_db.primary_url, "QUEUE_URL": amqp_url}
    with client(**env) as c, working(Worker(settings(**env))) as worker:
        owner = new_user(c)
        for n in range(3):
            assert c.post("/items", json={"owner": owner, "name": f"i{n}"}).status_code == 201
        # The count is maintained asynchronously by the worker.
        eventually(lambda: c.get(f"/users/{owner}").json()["item_count"] == 3)
        assert eventually(lambda: metric(c, "queue_published_total") == 3)
        assert jobs_done(worker) >= 1


def test_a_failing_job_is_retried_until_it_succeeds(pg_cluster: PgCluster, amqp_url: str) -> None:
    # The worker's database does not exist yet, so the first attempts fail for real.
    name = f"late_{pg_cluster.create_database()}"
    url = pg_cluster.primary.url(name)
    worker = Worker(
        settings(DATABASE_URL=url, QUEUE_URL=amqp_url), base_backoff_ms=200, max_attempts=50
    )
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    with working(worker):
        declare_topology(conn.channel())
        conn.channel().basic_publish(
            "", JOBS, b'{"type": "item_created", "owner": "0123456789abcdef0123456789abcdef"}'
        )
        eventually(lambda: jobs_done(worker, "retried") >= 1)
        with psycopg.connect(pg_cluster.primary.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        from sample_app.storage.postgres import PostgresStore

        store = PostgresStore(url)
        store.ensure_schema()
        store.close()
        eventually(lambda: jobs_done(worker) == 1)
    conn.close()
    with psycopg.connect(url) as db:
        assert db.execute("SELECT item_count FROM user_stats").fetchall() == [(0,)]


def test_poison_and_exhausted_jobs_go_to_the_dead_letter_queue(
    tmp_path: Path, amqp_url: str
) -> None:
    broken = "postgresql://nobody@127.0.0.1:1/none"  # every attempt fails
    worker = Worker(
        settings(DATABASE_URL=broken, QUEUE_URL=amqp_url), base_backoff_ms=50, max_attempts=3
    )
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    with working(worker):
        channel = conn.channel()
        declare_topology(channel)
        channel.basic_publish("", JOBS, b"this is not json")
        channel.basic_publish("", JOBS, b'{"type": "unknown"}')
        channel.basic_publish(
            "", JOBS, b'{"type": "item_created", "owner": "0123456789abcdef0123456789abcdef"}'
        )
        eventually(lambda: dead_letters(amqp_url) == 3)
        assert jobs_done(worker, "retried") == 2
        assert jobs_done(worker, "dead") == 3
    body = conn.channel().basic_get(DLQ, auto_ack=True)[2]
    assert body == b"this is not json"  # kept verbatim for a person to inspect
    conn.close()


def test_a_queue_outage_holds_jobs_and_publishes_them_later(
    pg_db: PgDb, rabbitmq: RabbitMQ, amqp_url: str
) -> None:
    env = {"DATABASE_URL": pg_db.primary_url, "QUEUE_URL": amqp_url}
    with client(**env) as c:
        owner = new_user(c)
        assert c.post("/items", json={"owner": owner, "name": "before"}).status_code == 201
        eventually(lambda: metric(c, "queue_published_total") == 1)

        rabbitmq.stop()
        try:
            # The request still succeeds; the job waits in the outbox.
            assert c.post("/items", json={"owner": owner, "name": "during"}).status_code == 201
            eventually(lambda: metric(c, "queue_publish_errors_total") >= 1)
            assert metric(c, "queue_outbox_pending") == 1
            assert c.get("/readyz").status_code == 200
        finally:
            rabbitmq.start()
        eventually(lambda: metric(c, "queue_published_total") == 2, timeout=30)
        assert metric(c, "queue_outbox_pending") == 0
        with working(Worker(settings(**env), metrics=Metrics("test"))):
            eventually(lambda: c.get(f"/users/{owner}").json()["item_count"] == 2)
