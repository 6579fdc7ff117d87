"""`python -m sample_app loadgen --users N --duration S --target URL`

Closed-loop virtual users, started on a linear ramp. Each user owns an account
and a few items, then loops over a read-heavy mix: its own items, other users'
items and profiles, single items, the static page, and (write_ratio of the time)
new items. Prints RPS and latency percentiles, with a progress line on a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    by_kind: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0
    active_users: int = 0

    def record(self, kind: str, seconds: float, status: int) -> None:
        self.latencies.append(seconds)
        self.by_kind[kind] += 1
        if status >= 400:
            self.errors[f"{kind}:{status}"] += 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize(stats: Stats) -> dict[str, Any]:
    elapsed = max(stats.finished - stats.started, 1e-9)
    return {
        "requests": len(stats.latencies),
        "errors": sum(stats.errors.values()),
        "seconds": round(elapsed, 2),
        "rps": round(len(stats.latencies) / elapsed, 1),
        "p50_ms": round(percentile(stats.latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(stats.latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(stats.latencies, 0.99) * 1000, 2),
        "mix": dict(stats.by_kind),
        "error_kinds": dict(stats.errors),
    }


class VirtualUser:
    def __init__(
        self,
        client: httpx.AsyncClient,
        stats: Stats,
        others: list[str],
        write_ratio: float,
        think: float,
        rng: random.Random,
    ) -> None:
        self.client = client
        self.stats = stats
        self.others = others
        self.write_ratio = write_ratio
        self.think = think
        self.rng = rng
        self.user_id = ""
        self.items: list[str] = []

    async def call(self, kind: str, method: str, url: str, **kw: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            resp = await self.client.request(
                method, url, headers={"x-user-id": self.user_id or "anonymous"}, **kw
            )
        except httpx.HTTPError:
            self.stats.record(kind, time.perf_counter() - started, 599)
            return None
        self.stats.record(kind, time.perf_counter() - started, resp.status_code)
        return resp

    async def sign_up(self) -> bool:
        resp = await self.call(
            "create_user",
            "POST",
            "/users",
            json={
                "name": f"load user {uuid.uuid4().hex[:6]}",
                "email": f"load-{uuid.uuid4().hex}@example.com",
            },
        )
        if resp is None or resp.status_code != 201:
            return False
        self.user_id = resp.json()["id"]
        self.others.append(self.user_id)
        for _ in range(3):
            await self.write()
        return True

    async def write(self) -> None:
        resp = await self.call(
            "create_item",
            "POST",
            "/items",
            json={
                "owner": self.user_id,
                "name": f"item {self.rng.randrange(10**6)}",
                "price_cents": self.rng.randrange(100, 100_000),
            },
        )
        if resp is not None and resp.status_code == 201:
            self.items.append(resp.json()["id"])

    async def step(self) -> None:
        r = self.rng.random()
        if r < self.write_ratio:
            await self.write()
            return
        r = self.rng.random()
        other = self.rng.choice(self.others) if self.others else self.user_id
        if r < 0.35:
            await self.call("list_own_items", "GET", "/items", params={"owner": self.user_id})
        elif r < 0.65:
            await self.call("list_items", "GET", "/items", params={"owner": other})
        elif r < 0.85:
            await self.call("get_user", "GET", f"/users/{other}")
        elif r < 0.95 and self.items:
            await self.call("get_item", "GET", f"/items/{self.rng.choice(self.items)}")
        else:
            await self.call("static", "GET", "/static/index.html")

    async def run(self, until: float) -> None:
        if not await self.sign_up():
            return
        self.stats.active_users += 1
        while time.monotonic() < until:
            await self.step()
            if self.think:
                await asyncio.sleep(self.rng.expovariate(1 / self.think))


async def progress(stats: Stats, until: float, total_users: int) -> None:
    last = 0
    while time.monotonic() < until:
        await asyncio.sleep(1.0)
        done = len(stats.latencies)
        tail = stats.latencies[last:]
        last = done
        print(
            f"\r{until - time.monotonic():5.0f}s left  users {stats.active_users}/{total_users}"
            f"  rps {len(tail):6d}  p95 {percentile(tail, 0.95) * 1000:7.1f} ms"
            f"  errors {sum(stats.errors.values())}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )
    print(file=sys.stderr)


async def run_load(
    target: str,
    users: int,
    duration: float,
    ramp: float | None = None,
    write_ratio: float = 0.1,
    think: float = 0.0,
    seed: int = 7,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Run the load and return the summary (also used by the benchmark)."""
    ramp = duration / 5 if ramp is None else ramp
    stats = Stats()
    others: list[str] = []
    limits = httpx.Limits(max_connections=users + 4, max_keepalive_connections=users + 4)
    async with httpx.AsyncClient(
        base_url=target.rstrip("/"), limits=limits, timeout=10.0
    ) as client:
        stats.started = time.monotonic()
        until = stats.started + duration
        tasks = []
        for i in range(users):
            vu = VirtualUser(
                client, stats, others, write_ratio, think, random.Random(seed * 100_003 + i)
            )
            delay = ramp * i / max(users, 1)
            tasks.append(asyncio.create_task(_delayed(delay, vu.run(until))))
        reporter = asyncio.create_task(progress(stats, until, users)) if show_progress else None
        await asyncio.gather(*tasks)
        stats.finished = time.monotonic()
        if reporter is not None:
            await reporter
    return summarize(stats)


async def _delayed(delay: float, coro: Any) -> None:
    await asyncio.sleep(delay)
    await coro


def main(args: argparse.Namespace) -> int:
    if args.users < 1 or args.duration <= 0 or not 0 <= args.write_ratio <= 1:
        print("--users must be >= 1, --duration > 0, --write-ratio in [0, 1]", file=sys.stderr)
        return 2
    # httpx logs every request at INFO: formatting those lines would cost the load side
    # the CPU it needs to drive the target. The progress line and summary are printed.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    summary = asyncio.run(
        run_load(
            args.target,
            args.users,
            args.duration,
            args.ramp,
            args.write_ratio,
            args.think,
            show_progress=sys.stderr.isatty(),
        )
    )
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['requests']} requests in {summary['seconds']}s: "
            f"{summary['rps']} req/s, p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, "
            f"p99 {summary['p99_ms']} ms, {summary['errors']} errors"
        )
    return 0 if summary["requests"] else 1
