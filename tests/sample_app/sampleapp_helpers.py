"""Shared test helpers: apps under TestClient, apps on real ports, metric parsing.

Ports come from conftest (`free_port`) and polling from phaseshift.lab.wait, which the
bench loads on its own as well.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from phaseshift.lab.wait import wait_for
from sample_app.app import create_app
from sample_app.config import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def settings(**env: str) -> Settings:
    return Settings.from_env({"PHASESHIFT_PLAN": "test", **env})


@contextmanager
def client(**env: str) -> Iterator[TestClient]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(create_app(settings(**env)), raise_server_exceptions=False) as c:
            yield c


def metric(c: Any, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    text = c.get("/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def new_user(c: Any, name: str = "Ada") -> str:
    import uuid

    r = c.post("/users", json={"name": name, "email": f"{uuid.uuid4().hex}@example.com"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


class ServerThread:
    """A uvicorn server on a real port, in a thread of this process."""

    def __init__(self, app: Starlette, port: int) -> None:
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=20)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


class Loop(Protocol):
    """A blocking run() loop that stop() ends: the worker, the event consumer."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


L = TypeVar("L", bound=Loop)


@contextmanager
def running(loop: L) -> Iterator[L]:
    """`loop.run()` in a thread of this process until the block ends."""
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.stop()
        thread.join(30)
        assert not thread.is_alive(), f"{loop} did not stop"
