"""What changes between two sets of desired objects, by object_key."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from phaseshift.api import LABEL_PHASE


@dataclass(frozen=True)
class ObjectDiff:
    added: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    removed: list[dict[str, Any]]


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    # Every object is relabelled with its phase; that alone is not a change worth listing.
    result = copy.deepcopy(obj)
    result["metadata"].get("labels", {}).pop(LABEL_PHASE, None)
    return result


def diff_objects(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> ObjectDiff:
    """Objects only in `new`, in both but different (beyond the phase label), only in
    `old`; each list keeps the apply order of the list it comes from."""
    before = {_key(obj): obj for obj in old}
    after_keys = {_key(obj) for obj in new}
    return ObjectDiff(
        added=[obj for obj in new if _key(obj) not in before],
        changed=[
            obj
            for obj in new
            if _key(obj) in before and _comparable(before[_key(obj)]) != _comparable(obj)
        ],
        removed=[obj for obj in old if _key(obj) not in after_keys],
    )
