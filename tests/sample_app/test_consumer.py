"""The event consumer's handling of single records, without a broker: the pure part
(parsing, counting, recognising redeliveries) that the consume loop in
sample_app.consumer calls for each record. test_events.py runs the loop itself against
a real broker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from sample_app.__main__ import build_parser
from sample_app.config import Settings
from sample_app.consumer import (
    GROUP,
    Consumer,
    Ledger,
    consumer_config,
    handle_event,
    lag,
)
from sample_app.events import TOPIC, InvalidEvent, parse_event
from sample_app.feed import ActivityRow, FeedUnavailable
from sample_app.metrics import Metrics


@dataclass(frozen=True)
class FakeRecord:
    offset: int
    value: bytes | None
    partition: int = 0
    topic: str = TOPIC


def event(kind: str, key: str = "u1", **data: object) -> bytes:
    # The shape events.EventPublisher sends.
    return json.dumps({"type": kind, "key": key, "data": {"id": key, **data}}).encode()


def consumed(metrics: Metrics, kind: str) -> float:
    value = metrics.registry.get_sample_value(
        "events_consumed_total", {"plan": metrics.plan, "type": kind}
    )
    return value or 0.0


class Feed:
    """A feed writer that keeps its rows, or fails while `down`."""

    def __init__(self) -> None:
        self.rows: list[ActivityRow] = []
        self.down = False

    def write(self, row: ActivityRow) -> None:
        if self.down:
            raise FeedUnavailable("Cassandra is down")
        self.rows.append(row)


def counted(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name, {"plan": metrics.plan}) or 0.0


def test_parse_event_reads_what_the_publisher_writes() -> None:
    parsed = parse_event(event("item_created", owner_id="u1"))
    assert (parsed.type, parsed.key, parsed.data["owner_id"]) == ("item_created", "u1", "u1")
    assert parse_event(event("user_created")).type == "user_created"


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"{bad",
        b"[1, 2]",
        json.dumps({"type": "user_deleted", "key": "u1", "data": {}}).encode(),
        json.dumps({"type": "user_created", "key": "", "data": {}}).encode(),
        json.dumps({"type": "user_created", "key": "u1", "data": "x"}).encode(),
    ],
)
def test_parse_event_rejects_what_is_not_an_event(value: bytes | None) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(value)


def test_events_are_counted_by_type_and_a_redelivery_only_once() -> None:
    metrics, ledger = Metrics("shop"), Ledger()
    records = [FakeRecord(0, event("user_created")), FakeRecord(1, event("item_created"))]
    assert [handle_event(r, ledger, metrics) for r in records] == ["user_created", "item_created"]
    # A failed commit hands the same records out again: nothing is counted twice.
    assert [handle_event(r, ledger, metrics) for r in records] == ["duplicate", "duplicate"]
    assert consumed(metrics, "user_created") == 1
    assert consumed(metrics, "item_created") == 1
    # Offsets are per partition.
    assert handle_event(FakeRecord(0, event("user_created"), partition=1), ledger, metrics) == (
        "user_created"
    )
    assert consumed(metrics, "user_created") == 2


def test_an_invalid_event_is_counted_and_passed_so_it_cannot_stall_a_partition() -> None:
    metrics, ledger = Metrics("shop"), Ledger()
    assert handle_event(FakeRecord(0, b"{bad"), ledger, metrics) == "invalid"
    assert handle_event(FakeRecord(1, event("user_created")), ledger, metrics) == "user_created"
    assert consumed(metrics, "invalid") == 1
    assert handle_event(FakeRecord(0, b"{bad"), ledger, metrics) == "duplicate"


def test_each_event_writes_its_feed_row_once() -> None:
    metrics, ledger, feed = Metrics("shop"), Ledger(), Feed()
    record = FakeRecord(0, event("user_created", created_at=5, name="Ada"))
    assert handle_event(record, ledger, metrics, feed) == "user_created"
    assert [(r.user_id, r.at_ms, r.type) for r in feed.rows] == [("u1", 5, "user_created")]
    assert handle_event(record, ledger, metrics, feed) == "duplicate"
    assert len(feed.rows) == 1
    assert counted(metrics, "feed_writes_total") == 1


def test_a_row_not_written_leaves_its_event_unhandled() -> None:
    metrics, ledger, feed = Metrics("shop"), Ledger(), Feed()
    record = FakeRecord(0, event("user_created", created_at=5))
    feed.down = True
    with pytest.raises(FeedUnavailable):
        handle_event(record, ledger, metrics, feed)
    # Neither counted nor marked done: the same record is handled when it comes again.
    assert not ledger.seen(record)
    assert consumed(metrics, "user_created") == 0
    assert counted(metrics, "feed_errors_total") == 1
    feed.down = False
    assert handle_event(record, ledger, metrics, feed) == "user_created"
    assert len(feed.rows) == 1


def test_an_event_the_feed_cannot_hold_is_passed_not_retried() -> None:
    metrics, ledger, feed = Metrics("shop"), Ledger(), Feed()
    # No created_at: no row could ever be written for it.
    assert handle_event(FakeRecord(0, event("user_created")), ledger, metrics, feed) == "invalid"
    assert feed.rows == []
    # Without a feed the same event is only counted.
    assert handle_event(FakeRecord(1, event("user_created")), ledger, metrics) == "user_created"


def test_a_revoked_partition_is_forgotten() -> None:
    metrics, ledger = Metrics("shop"), Ledger()
    record = FakeRecord(5, event("user_created"), partition=2)
    handle_event(record, ledger, metrics)
    assert ledger.seen(record)
    ledger.forget([(TOPIC, 2)])
    assert not ledger.seen(record)


def test_lag_sums_each_partitions_backlog() -> None:
    assert lag({"p0": 10, "p1": 4, "p2": None}, {"p0": 7, "p1": 4, "p2": 0}) == 3
    assert lag({"p0": 3}, {"p0": 9}) == 0


def test_the_consumer_commits_by_hand_in_one_group() -> None:
    config = consumer_config(["kafka:9092"])
    assert config["group_id"] == GROUP
    assert config["enable_auto_commit"] is False
    assert config["bootstrap_servers"] == ["kafka:9092"]


def test_the_consumer_needs_brokers_and_has_a_command_and_role() -> None:
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP"):
        Consumer(Settings(role="consumer"))
    assert Settings.from_env({"APP_ROLE": "consumer"}).role == "consumer"
    assert build_parser().parse_args(["consume", "--port", "9100"]).port == 9100
    metrics = Metrics("shop")
    Consumer(Settings(role="consumer", kafka_bootstrap=("kafka:9092",)), metrics)
    # Every series exists from the first scrape.
    assert consumed(metrics, "item_created") == 0
    assert metrics.registry.get_sample_value("events_consumer_lag", {"plan": "shop"}) == 0
