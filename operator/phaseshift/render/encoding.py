"""Encodings shared by builders: Secret data and content hashes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any


def secret_data(values: Mapping[str, str]) -> dict[str, str]:
    # `data`, not `stringData`: stringData is write-only, so a server-side apply of it
    # can never be compared with what the server returns.
    return {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}


def content_hash(*parts: Any) -> str:
    """A stable digest of JSON-able parts, for pod-template annotations that make a
    Deployment roll when its configuration changes."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()[:16]
