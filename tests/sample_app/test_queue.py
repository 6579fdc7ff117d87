"""Phase 3 jobs over a real RabbitMQ: quorum queues, publish, consume, retry,
dead-letter, outage, and queues an older version declared as classic ones."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest
from conftest import PgCluster, PgDb, RabbitMQ
from sampleapp_helpers import client, metric, new_user, running, settings

from phaseshift.lab.wait import wait_for
from sample_app.metrics import Metrics
from sample_app.queue import DELIVERY_LIMIT, DLQ, JOBS, RETRY, declare_topology
from sample_app.worker import PREFETCH, Worker, dead_letters

JOB = b'{"type": "item_created", "owner": "0123456789abcdef0123456789abcdef"}'
BROKEN_DB = "postgresql://nobody@127.0.0.1:1/none"  # every attempt of a job fails


@contextmanager
def working(worker: Worker) -> Iterator[Worker]:
    with running(worker):
        yield worker
    worker.close()


def jobs_done(worker: Worker, outcome: str = "done") -> float:
    return worker.metrics.jobs.labels(plan=worker.metrics.plan, outcome=outcome)._value.get()


def queues(rabbitmq: RabbitMQ) -> dict[str, tuple[str, dict[str, Any]]]:
    """Queue name -> (type, arguments), as the broker reports them."""
    rows = json.loads(
        rabbitmq.ctl("list_queues", "-q", "--formatter", "json", "name", "type", "arguments")
    )
    return {row["name"]: (row["type"], {k: v for k, _, v in row["arguments"]}) for row in rows}


def dead_letter(conn: pika.BlockingConnection) -> tuple[pika.BasicProperties, bytes]:
    method, props, body = conn.channel().basic_get(DLQ, auto_ack=True)
    assert method is not None, "the DLQ is empty"
    return props, body


def deaths(props: pika.BasicProperties) -> dict[tuple[str, str], int]:
    """(queue, reason) -> count, from the x-death header RabbitMQ keeps."""
    return {(d["queue"], d["reason"]): d["count"] for d in props.headers["x-death"]}


def declare_classic_topology(conn: pika.BlockingConnection) -> None:
    """The queues as versions before quorum queues declared them."""
    channel = conn.channel()
    channel.queue_declare(queue=DLQ, durable=True)
    dead_letter_to = {"x-dead-letter-exchange": ""}
    channel.queue_declare(
        queue=JOBS, durable=True, arguments={**dead_letter_to, "x-dead-letter-routing-key": DLQ}
    )
    channel.queue_declare(
        queue=RETRY, durable=True, arguments={**dead_letter_to, "x-dead-letter-routing-key": JOBS}
    )
    channel.close()


def test_the_job_queues_are_quorum_queues(rabbitmq: RabbitMQ, amqp_url: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    assert declare_topology(conn) == []
    assert declare_topology(conn) == []  # redeclaring is a no-op
    conn.close()
    found = queues(rabbitmq)
    assert {name: kind for name, (kind, _) in found.items()} == {
        JOBS: "quorum",
        RETRY: "quorum",
        DLQ: "quorum",
    }
    # Both dead-letter paths are at-least-once, which needs reject-publish.
    for source, target in ((JOBS, DLQ), (RETRY, JOBS)):
        arguments = found[source][1]
        assert arguments["x-dead-letter-routing-key"] == target
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
        assert arguments["x-overflow"] == "reject-publish"
    assert found[JOBS][1]["x-delivery-limit"] == DELIVERY_LIMIT


def test_workers_acknowledge_by_hand_with_a_prefetch(
    pg_db: PgDb, rabbitmq: RabbitMQ, amqp_url: str
) -> None:
    env = {"DATABASE_URL": pg_db.primary_url, "QUEUE_URL": amqp_url}
    workers = [Worker(settings(**env)), Worker(settings(**env))]
    with working(workers[0]), working(workers[1]):

        def consumers() -> list[dict[str, Any]]:
            rows = json.loads(
                rabbitmq.ctl(
                    "list_consumers",
                    "-q",
                    "--formatter",
                    "json",
                    "queue_name",
                    "ack_required",
                    "prefetch_count",
                )
            )
            return rows if len(rows) == 2 else []

        for row in wait_for(consumers, what="two consumers"):
            assert row == {"queue_name": JOBS, "ack_required": True, "prefetch_count": PREFETCH}
        with client(**env) as c:
            owner = new_user(c)
            for n in range(10):
                assert c.post("/items", json={"owner": owner, "name": f"i{n}"}).status_code == 201
            wait_for(lambda: c.get(f"/users/{owner}").json()["item_count"] == 10)
        wait_for(lambda: sum(jobs_done(w) for w in workers) == 10)


def test_a_write_publishes_a_job_the_worker_completes(pg_db: PgDb, amqp_url: str) -> None:
    env = {"DATABASE_URL": pg_db.primary_url, "QUEUE_URL": amqp_url}
    with client(**env) as c, working(Worker(settings(**env))) as worker:
        owner = new_user(c)
        for n in range(3):
            assert c.post("/items", json={"owner": owner, "name": f"i{n}"}).status_code == 201
        # The count is maintained asynchronously by the worker.
        wait_for(lambda: c.get(f"/users/{owner}").json()["item_count"] == 3)
        assert wait_for(lambda: metric(c, "queue_published_total") == 3)
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
        declare_topology(conn)
        conn.channel().basic_publish(
            "", JOBS, b'{"type": "item_created", "owner": "0123456789abcdef0123456789abcdef"}'
        )
        wait_for(lambda: jobs_done(worker, "retried") >= 1)
        with psycopg.connect(pg_cluster.primary.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        from sample_app.storage.postgres import PostgresStore

        store = PostgresStore(url)
        store.ensure_schema()
        store.close()
        wait_for(lambda: jobs_done(worker) == 1)
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
        declare_topology(conn)
        channel = conn.channel()
        channel.basic_publish("", JOBS, b"this is not json")
        channel.basic_publish("", JOBS, b'{"type": "unknown"}')
        channel.basic_publish(
            "", JOBS, b'{"type": "item_created", "owner": "0123456789abcdef0123456789abcdef"}'
        )
        wait_for(lambda: dead_letters(amqp_url) == 3)
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
        wait_for(lambda: metric(c, "queue_published_total") == 1)

        rabbitmq.stop()
        try:
            # The request still succeeds; the job waits in the outbox.
            assert c.post("/items", json={"owner": owner, "name": "during"}).status_code == 201
            wait_for(lambda: metric(c, "queue_publish_errors_total") >= 1)
            assert metric(c, "queue_outbox_pending") == 1
            assert c.get("/readyz").status_code == 200
        finally:
            rabbitmq.start()
        wait_for(lambda: metric(c, "queue_published_total") == 2, timeout=30)
        assert metric(c, "queue_outbox_pending") == 0
        with working(Worker(settings(**env), metrics=Metrics("test"))):
            wait_for(lambda: c.get(f"/users/{owner}").json()["item_count"] == 2)


def test_a_failed_job_goes_round_the_retry_queue_then_to_the_dlq(amqp_url: str) -> None:
    worker = Worker(
        settings(DATABASE_URL=BROKEN_DB, QUEUE_URL=amqp_url), base_backoff_ms=50, max_attempts=3
    )
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    with working(worker):
        declare_topology(conn)
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish("", JOBS, JOB, mandatory=True)
        wait_for(lambda: dead_letters(amqp_url) == 1)
    props, body = dead_letter(conn)
    conn.close()
    assert body == JOB
    assert props.headers["x-attempt"] == 3
    # Twice parked on the retry queue until its TTL sent it back to the jobs; the third
    # failure was rejected into the DLQ.
    assert deaths(props) == {(RETRY, "expired"): 2, (JOBS, "rejected"): 1}
    assert (jobs_done(worker, "retried"), jobs_done(worker, "dead")) == (2, 1)


def test_a_job_handed_back_too_often_goes_to_the_dlq(amqp_url: str) -> None:
    # As when each worker that takes it dies before acknowledging it.
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    declare_topology(conn)
    channel = conn.channel()
    channel.confirm_delivery()
    channel.basic_publish("", JOBS, JOB, mandatory=True)
    deliveries = 0
    for _ in range(DELIVERY_LIMIT * 2):
        method, _props, _body = channel.basic_get(JOBS)
        if method is None:
            break
        deliveries += 1
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert deliveries == DELIVERY_LIMIT + 1
    wait_for(lambda: dead_letters(amqp_url) == 1)
    props, body = dead_letter(conn)
    conn.close()
    assert body == JOB
    assert deaths(props) == {(JOBS, "delivery_limit"): 1}


def test_a_retry_the_broker_refuses_is_handed_back_not_lost(amqp_url: str) -> None:
    worker = Worker(
        settings(DATABASE_URL=BROKEN_DB, QUEUE_URL=amqp_url), base_backoff_ms=50, max_attempts=3
    )
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    declare_topology(conn)
    with working(worker):
        wait_for(lambda: conn.channel().queue_declare(JOBS, passive=True).method.consumer_count)
        conn.channel().queue_delete(RETRY)  # the worker's retry copies become unroutable
        conn.channel().basic_publish("", JOBS, JOB)
        # Not dead_letters(): it would declare the retry queue again.
        wait_for(lambda: conn.channel().queue_declare(DLQ, passive=True).method.message_count)
    props, body = dead_letter(conn)
    conn.close()
    assert body == JOB
    assert deaths(props) == {(JOBS, "delivery_limit"): 1}
    assert jobs_done(worker, "requeued") == DELIVERY_LIMIT + 1
    assert jobs_done(worker, "retried") == 0


def test_classic_queues_of_an_older_version_keep_working_and_are_named(
    pg_db: PgDb, rabbitmq: RabbitMQ, amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    declare_classic_topology(conn)
    with caplog.at_level(logging.ERROR, logger="sample_app.queue"):
        assert declare_topology(conn) == [DLQ, JOBS, RETRY]
    conn.close()
    for name in (DLQ, JOBS, RETRY):
        (message,) = [r.getMessage() for r in caplog.records if f"queue {name} " in r.getMessage()]
        assert "PRECONDITION_FAILED" in message
        assert f"rabbitmqctl delete_queue --if-empty {name}" in message
    # The web process publishes and the worker consumes through the classic queues...
    env = {"DATABASE_URL": pg_db.primary_url, "QUEUE_URL": amqp_url}
    with client(**env) as c, working(Worker(settings(**env))):
        owner = new_user(c)
        assert c.post("/items", json={"owner": owner, "name": "i"}).status_code == 201
        wait_for(lambda: c.get(f"/users/{owner}").json()["item_count"] == 1)
    # ...which stay classic until someone replaces them.
    assert {kind for kind, _ in queues(rabbitmq).values()} == {"classic"}
