"""GET /users/{id}/activity: a user's activity feed, newest first, from Cassandra."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..feed import feed_json
from ..runtime import DataRuntime
from ..service import ID_RE, MAX_LIMIT
from .responses import error, int_param, json_bytes


async def activity(request: Request) -> Response:
    runtime: DataRuntime = request.app.state.runtime
    user_id = request.path_params["id"]
    limit = int_param(request, "limit", 20, 1, MAX_LIMIT)
    if runtime.feed is None:
        # Phases without Cassandra have no feed: the resource does not exist there.
        return error(404, "not_found", "no activity feed here (CASSANDRA_CONTACT_POINTS unset)")
    if not ID_RE.match(user_id):
        return error(404, "not_found", "no such user")  # a malformed id names nobody
    # FeedUnavailable is answered 503 by endpoints.errors.
    entries = await run_in_threadpool(runtime.feed.read, user_id, limit)
    runtime.metrics.active.touch(user_id)
    return json_bytes(feed_json(user_id, entries))


ROUTES: list[BaseRoute] = [Route("/users/{id}/activity", activity, methods=["GET"])]
