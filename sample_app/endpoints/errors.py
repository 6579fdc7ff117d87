"""Exceptions raised by endpoints, answered as JSON errors."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..feed import FeedUnavailable
from ..metrics import Metrics
from ..service import Invalid
from ..storage import Conflict, NotFound, StorageUnavailable, WritesFrozen
from .responses import error

log = logging.getLogger(__name__)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    return error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))


async def on_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Invalid)
    return error(exc.status, "invalid_request", str(exc))


async def on_conflict(request: Request, exc: Exception) -> Response:
    return error(409, "conflict", str(exc))


async def on_not_found(request: Request, exc: Exception) -> Response:
    # Raised when a write names a row that does not exist (an item's owner).
    return error(422, "invalid_reference", str(exc))


async def on_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("storage unavailable: %s", exc)
    metrics: Metrics = request.app.state.runtime.metrics
    metrics.db_errors.labels(plan=metrics.plan).inc()
    return error(503, "unavailable", "the database is unavailable, retry later")


# A migration's final pass and the switch that follows take seconds.
FROZEN_RETRY_AFTER_SECONDS = 5


async def on_writes_frozen(request: Request, exc: Exception) -> Response:
    log.info("write refused: %s", exc)
    response = error(503, "writes_frozen", f"writes are paused, retry later: {exc}")
    response.headers["Retry-After"] = str(FROZEN_RETRY_AFTER_SECONDS)
    return response


async def on_feed_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("activity feed unavailable: %s", exc)
    metrics: Metrics = request.app.state.runtime.metrics
    metrics.feed_errors.labels(plan=metrics.plan).inc()
    return error(503, "unavailable", "the activity feed (Cassandra) is unavailable, retry later")


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, "internal", "internal error")


HANDLERS = {
    HTTPException: on_http_error,
    Invalid: on_invalid,
    Conflict: on_conflict,
    NotFound: on_not_found,
    StorageUnavailable: on_unavailable,
    WritesFrozen: on_writes_frozen,
    FeedUnavailable: on_feed_unavailable,
    Exception: on_unexpected,
}
