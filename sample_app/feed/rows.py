"""From a domain event to its feed row, and from rows to the JSON the API answers.

Pure: what a row holds, and that a redelivered event makes the same row, are tested
without Cassandra.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..events import Event, InvalidEvent

# What the feed shows of each event. The feed is a read model: it keeps only what it
# serves, so a user's email, for one, stays in the relational database.
DETAIL_FIELDS = {"user_created": ("name",), "item_created": ("name", "price_cents")}
# A Cassandra timestamp the driver can hand back as a datetime (year 9999 at most).
MAX_AT_MS = 253_402_300_799_999
EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class ActivityRow:
    """One row of activity_by_user. Its key, (user_id, at, event_id), comes from the
    event alone, so delivering an event again overwrites the same row."""

    user_id: str
    at_ms: int
    # "<type>:<subject id>": unique per event, and orders events of the same millisecond.
    event_id: str
    type: str
    subject_id: str
    detail: str  # JSON of DETAIL_FIELDS


@dataclass(frozen=True)
class FeedEntry:
    """A row as read back: the columns the API shows."""

    at_ms: int
    type: str
    subject_id: str
    detail: str


def activity_row(event: Event) -> ActivityRow:
    """The feed row of an event; InvalidEvent when it lacks the id or the time (no row
    could ever be written for it, so retrying would only stall its partition)."""
    subject = event.data.get("id")
    if not isinstance(subject, str) or not subject:
        raise InvalidEvent(f"{event.type} needs data.id")
    at = event.data.get("created_at")
    # bool is an int in Python; true is not a time.
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= MAX_AT_MS:
        raise InvalidEvent(f"{event.type} needs data.created_at in milliseconds")
    detail = {k: event.data[k] for k in DETAIL_FIELDS[event.type] if k in event.data}
    return ActivityRow(
        user_id=event.key,
        at_ms=at,
        event_id=f"{event.type}:{subject}",
        type=event.type,
        subject_id=subject,
        detail=json.dumps(detail, separators=(",", ":"), sort_keys=True),
    )


def millis(value: datetime | int) -> int:
    """A timestamp column as milliseconds since the epoch (the driver returns a naive
    UTC datetime)."""
    if isinstance(value, int):
        return value
    return (value - EPOCH) // timedelta(milliseconds=1)


def entry_view(entry: FeedEntry) -> dict[str, Any]:
    try:
        detail = json.loads(entry.detail) if entry.detail else {}
    except ValueError:
        detail = {}  # a row written by hand; the entry is still worth showing
    return {"at": entry.at_ms, "type": entry.type, "id": entry.subject_id, "detail": detail}


def feed_json(user_id: str, entries: list[FeedEntry]) -> bytes:
    body = {"user": user_id, "activity": [entry_view(e) for e in entries]}
    return json.dumps(body, separators=(",", ":")).encode()
