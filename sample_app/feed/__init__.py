"""Phase 4's activity feed: a read model of each user's events, kept in Cassandra.

The event consumer writes one row per domain event it reads from Kafka; the data
service answers GET /users/{id}/activity from it, newest first. A user's feed is one
Cassandra partition read in clustering order, so it costs the same however many users
there are, and the relational database never serves it. The feed follows the event
stream: a write shows up in it once the consumer has handled its event.
"""

from __future__ import annotations

from .rows import ActivityRow, FeedEntry, activity_row, entry_view, feed_json
from .store import ActivityFeed, FeedUnavailable

__all__ = [
    "ActivityFeed",
    "ActivityRow",
    "FeedEntry",
    "FeedUnavailable",
    "activity_row",
    "entry_view",
    "feed_json",
]
