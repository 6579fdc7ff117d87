"""Deterministic, DNS-valid object names that never collide between two plans.

A name is `<plan>-<suffix>` when that is a valid DNS-1035 label of at most
MAX_NAME_LENGTH characters. Otherwise (a long plan name, a dot, a leading digit) it is
`<sanitized prefix>-<suffix>-<8 hex of sha256(plan/suffix)>`. The two forms cannot
meet: a hashed name ends in eight hex digits and no suffix does; and two plain names
meet only if one suffix is a dash-tail of another, which tests/unit/render forbids.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

# A StatefulSet's pods carry controller-revision-hash=<name>-<10 chars>, a label value
# of at most 63 characters, so a StatefulSet name longer than 52 never gets pods.
MAX_NAME_LENGTH = 52
MAX_LABEL_VALUE = 63
_HASH_LENGTH = 8

_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NOT_NAME_CHAR = re.compile(r"[^a-z0-9-]+")


def short_hash(text: str, length: int = _HASH_LENGTH) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@lru_cache(maxsize=8192)
def object_name(plan: str, suffix: str) -> str:
    plain = f"{plan}-{suffix}"
    if len(plain) <= MAX_NAME_LENGTH and _DNS_1035_LABEL.match(plain):
        return plain
    room = MAX_NAME_LENGTH - len(suffix) - _HASH_LENGTH - 2
    prefix = _NOT_NAME_CHAR.sub("-", plan.lower())[:room].strip("-")
    if not prefix[:1].isalpha():
        prefix = ("p" + prefix)[:room].rstrip("-")
    return f"{prefix}-{suffix}-{short_hash(plan + '/' + suffix)}"


@lru_cache(maxsize=4096)
def label_value(value: str) -> str:
    """`value` when it fits a label value; otherwise a truncated prefix plus a hash."""
    if len(value) <= MAX_LABEL_VALUE:
        return value
    prefix = value[: MAX_LABEL_VALUE - _HASH_LENGTH - 1].rstrip("-_.")
    return f"{prefix}-{short_hash(value)}"
