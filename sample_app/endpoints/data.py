"""/users and /items, served by the data roles from their DataService."""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..runtime import DataRuntime
from ..service import MAX_LIMIT, DataService, Invalid
from .responses import error, int_param, json_bytes, read_json


def data_service(request: Request) -> DataService:
    runtime: DataRuntime = request.app.state.runtime
    return runtime.service


async def _one(
    peek: Callable[[str], bytes | None], load: Callable[[str], bytes | None], key: str
) -> bytes | None:
    """One user or item: a hit in process memory is answered here, without a hop to a
    worker thread; otherwise it is loaded there. A malformed id names nothing."""
    data = peek(key)
    if data is not None:
        return data
    try:
        return await run_in_threadpool(load, key)
    except Invalid:
        return None


class Users(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        limit = int_param(request, "limit", 20, 1, MAX_LIMIT)
        offset = int_param(request, "offset", 0, 0, 10_000)
        return json_bytes(await run_in_threadpool(data_service(request).list_users, limit, offset))

    async def post(self, request: Request) -> Response:
        body = await read_json(request)
        svc = data_service(request)
        user = await run_in_threadpool(svc.create_user, body)
        svc.metrics.active.touch(user["id"])
        return JSONResponse(user, status_code=201)


async def user(request: Request) -> Response:
    user_id = request.path_params["id"]
    svc = data_service(request)
    data = await _one(svc.peek_user, svc.get_user, user_id)
    if data is None:
        return error(404, "not_found", "no such user")
    svc.metrics.active.touch(user_id)
    return json_bytes(data)


class Items(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        limit = int_param(request, "limit", 20, 1, MAX_LIMIT)
        owner = request.query_params.get("owner")
        if owner is not None and owner == "":
            raise Invalid("'owner' must not be empty", 400)
        svc = data_service(request)
        data = svc.peek_items(owner, limit) if owner else None
        if data is None:
            data = await run_in_threadpool(svc.list_items, owner, limit)
        if owner:
            svc.metrics.active.touch(owner)
        return json_bytes(data)

    async def post(self, request: Request) -> Response:
        body = await read_json(request)
        svc = data_service(request)
        item = await run_in_threadpool(svc.create_item, body)
        svc.metrics.active.touch(item["owner"])
        return JSONResponse(item, status_code=201)


async def item(request: Request) -> Response:
    svc = data_service(request)
    data = await _one(svc.peek_item, svc.get_item, request.path_params["id"])
    if data is None:
        return error(404, "not_found", "no such item")
    return json_bytes(data)


USER_ROUTES: list[BaseRoute] = [
    Route("/users", Users),
    Route("/users/{id}", user, methods=["GET"]),
]

ITEM_ROUTES: list[BaseRoute] = [
    Route("/items", Items),
    Route("/items/{id}", item, methods=["GET"]),
]
