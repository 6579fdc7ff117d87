"""Writes through the app while the operator moves it, and the proof that none was lost.

`Writer` creates users through the app's entry Service from a thread, one after
another, and records what became of each: acknowledged (201, with the id the app gave
it), refused (503: a migration froze writes, or the database was away), or failed (no
answer: a connection reset while the Services switched). `missing` reads every
acknowledged user back; an acknowledged write that cannot be read back is lost.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    at: float
    """time.monotonic() when the answer came."""
    kind: str
    """acknowledged, refused or failed"""
    seconds: float


@dataclass
class Writer:
    url: str
    pause: float = 0.05
    acknowledged: list[str] = field(default_factory=list)
    refused_at: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Writer:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._write_one()
            self._stop.wait(self.pause)

    def _write_one(self) -> None:
        body = json.dumps({"name": "writer", "email": f"{uuid.uuid4().hex}@example.com"})
        request = urllib.request.Request(
            f"{self.url}/users",
            data=body.encode(),
            method="POST",
            headers={"content-type": "application/json"},
        )
        started = time.monotonic()
        kind = "acknowledged"
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.acknowledged.append(json.load(response)["id"])
        except urllib.error.HTTPError as e:
            if e.code == 503:
                kind = "refused"
                self.refused_at.append(time.monotonic())
            else:
                kind = "failed"
                self.failures.append(f"HTTP {e.code}")
        except OSError as e:  # no answer: reset, refused, timed out
            kind = "failed"
            self.failures.append(type(e).__name__)
        done = time.monotonic()
        self.outcomes.append(Outcome(done, kind, done - started))

    def between(self, start: float, end: float) -> list[Outcome]:
        """The writes that finished between two moments (time.monotonic())."""
        return [o for o in self.outcomes if start <= o.at <= end]

    def wait_for_acknowledged(self, count: int, timeout: float = 120) -> None:
        """Until `count` more writes than now are acknowledged."""
        goal = len(self.acknowledged) + count
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < goal:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} writes not acknowledged within {timeout}s: "
                    f"{len(self.refused_at)} refused, failures {self.failures[-5:]}"
                )
            time.sleep(0.2)

    @property
    def refused_seconds(self) -> float:
        """From the first refused write to the last (0 when none was refused)."""
        return self.refused_at[-1] - self.refused_at[0] if self.refused_at else 0.0

    def missing(self, url: str | None = None) -> list[str]:
        """The acknowledged writes the app cannot read back (through `url`, by default
        the one written to)."""
        base = url or self.url
        lost = []
        for user in self.acknowledged:
            try:
                with urllib.request.urlopen(f"{base}/users/{user}", timeout=10) as response:
                    if json.load(response).get("id") != user:
                        lost.append(user)
            except urllib.error.HTTPError:
                lost.append(user)
        return lost
