"""What changes between two sets of desired objects, by object_key."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from phaseshift.api import LABEL_PHASE
from phaseshift.render.keys import object_key


@dataclass(frozen=True)
class ObjectDiff:
    added: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    removed: list[dict[str, Any]]


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    # Every object is relabelled with its phase; that alone is not a change worth listing.
    result = copy.deepcopy(obj)
    result["metadata"].get("labels", {}).pop(LABEL_PHASE, None)
    return result


def diff_objects(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> ObjectDiff:
    """Objects only in `new`, in both but different (beyond the phase label), only in
    `old`; each list keeps the apply order of the list it comes from."""
    before = {object_key(obj): obj for obj in old}
    after_keys = {object_key(obj) for obj in new}
    return ObjectDiff(
        added=[obj for obj in new if object_key(obj) not in before],
        changed=[
            obj
            for obj in new
            if object_key(obj) in before
            and _comparable(before[object_key(obj)]) != _comparable(obj)
        ],
        removed=[obj for obj in old if object_key(obj) not in after_keys],
    )
