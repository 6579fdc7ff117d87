"""Phase 4's domain events on a real Kafka broker (one KRaft node on loopback): published
by the service as it writes, consumed by the event consumer, through a broker outage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import KafkaBroker, PgDb
from kafka import KafkaConsumer, KafkaProducer
from sampleapp_helpers import client, metric, new_user, running, settings

from phaseshift.lab.wait import wait_for
from sample_app.consumer import Consumer
from sample_app.events import TOPIC
from sample_app.metrics import Metrics


def read_topic(broker: KafkaBroker, count: int) -> list[Any]:
    """The first `count` records of the topic, across its partitions (no group)."""
    reader = KafkaConsumer(
        TOPIC,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    records: list[Any] = []
    try:

        def enough() -> bool:
            records.extend(reader)
            return len(records) >= count

        wait_for(enough, timeout=60)
    finally:
        reader.close()
    return records


def produce(broker: KafkaBroker, *values: bytes, key: bytes = b"u1") -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        for value in values:
            producer.send(TOPIC, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def event(kind: str, key: str) -> bytes:
    return json.dumps({"type": kind, "key": key, "data": {"id": key}}).encode()


@contextmanager
def consuming(broker: KafkaBroker) -> Iterator[Metrics]:
    """The consumer of `python -m sample_app consume`, running until the block ends."""
    metrics = Metrics("test")
    with running(Consumer(settings(KAFKA_BOOTSTRAP=broker.bootstrap), metrics)):
        yield metrics


def consumed(metrics: Metrics, kind: str) -> float:
    return (
        metrics.registry.get_sample_value("events_consumed_total", {"plan": "test", "type": kind})
        or 0.0
    )


def test_writes_publish_their_events_in_order_per_user(
    pg_db: PgDb, kafka_broker: KafkaBroker
) -> None:
    with client(DATABASE_URL=pg_db.primary_url, KAFKA_BOOTSTRAP=kafka_broker.bootstrap) as c:
        owner = new_user(c)
        for name in ("lamp", "desk"):
            assert c.post("/items", json={"owner": owner, "name": name}).status_code == 201
        wait_for(lambda: metric(c, "events_published_total") == 3, timeout=60)
        assert metric(c, "events_publish_errors_total") == 0

    records = read_topic(kafka_broker, 3)
    events = [json.loads(r.value) for r in records]
    # Keyed by the user: one partition, so a user's events keep their order.
    assert {r.key for r in records} == {owner.encode()}
    assert len({r.partition for r in records}) == 1
    assert [e["type"] for e in events] == ["user_created", "item_created", "item_created"]
    assert events[0]["data"]["id"] == owner
    assert [e["data"]["name"] for e in events[1:]] == ["lamp", "desk"]
    assert all(e["key"] == owner for e in events)


def test_the_consumer_counts_every_event_once_and_resumes_from_its_commits(
    kafka_broker: KafkaBroker,
) -> None:
    users = [f"u{n}" for n in range(20)]
    produce(kafka_broker, *(event("user_created", u) for u in users[:10]), key=b"a")
    produce(kafka_broker, *(event("item_created", u) for u in users[10:]), key=b"b")
    produce(kafka_broker, b"not json", key=b"c")  # committed past, not a stall

    with consuming(kafka_broker) as first:
        wait_for(
            lambda: (consumed(first, "user_created"), consumed(first, "item_created")) == (10, 10),
            timeout=60,
        )
        wait_for(lambda: consumed(first, "invalid") == 1, timeout=30)

    # A restarted consumer of the same group starts from the committed offsets: it sees
    # only what arrived since, and counts nothing twice.
    produce(kafka_broker, event("user_created", "late"), key=b"a")
    with consuming(kafka_broker) as second:
        wait_for(lambda: consumed(second, "user_created") == 1, timeout=60)
        wait_for(
            lambda: second.registry.get_sample_value("events_consumer_lag", {"plan": "test"}) == 0,
            timeout=30,
        )
        assert consumed(second, "item_created") == 0
        assert consumed(second, "invalid") == 0
        assert consumed(second, "duplicate") == 0


# A producer left unclosed by the outage would complain when collected.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_broker_outage_fails_no_request_and_delivery_resumes(
    pg_db: PgDb, kafka_broker: KafkaBroker
) -> None:
    with (
        client(DATABASE_URL=pg_db.primary_url, KAFKA_BOOTSTRAP=kafka_broker.bootstrap) as c,
        consuming(kafka_broker) as consumer,
    ):
        owner = new_user(c)
        wait_for(lambda: metric(c, "events_published_total") == 1, timeout=60)
        wait_for(lambda: consumed(consumer, "user_created") == 1, timeout=60)

        kafka_broker.stop()
        # Requests never wait for the event stream: the write succeeds; the event that
        # cannot be delivered is counted.
        r = c.post("/items", json={"owner": owner, "name": "during"})
        assert r.status_code == 201
        assert {i["name"] for i in c.get("/items", params={"owner": owner}).json()["items"]} == {
            "during"
        }
        wait_for(lambda: metric(c, "events_publish_errors_total") >= 1, timeout=60)

        kafka_broker.start()
        assert c.post("/items", json={"owner": owner, "name": "after"}).status_code == 201
        wait_for(lambda: metric(c, "events_published_total") >= 2, timeout=60)
        # The consumer rode out the outage and picks the new event up.
        wait_for(lambda: consumed(consumer, "item_created") >= 1, timeout=90)
