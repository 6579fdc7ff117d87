"""The Redis keys of cached values, shared by every process that reads or invalidates them."""

from __future__ import annotations


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def owner_items_key(owner: str) -> str:
    return f"items:owner:{owner}"


def item_key(item_id: str) -> str:
    return f"item:{item_id}"


def recent_write_key(user_id: str) -> str:
    return f"rw:{user_id}"
