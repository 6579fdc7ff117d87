"""The identity of a rendered object."""

from __future__ import annotations

from typing import Any


def object_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(apiVersion, kind, name): what identifies an object within the plan's namespace."""
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]
