"""The demo's live view: a rich panel on a terminal, one line per change otherwise."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from phaseshift.lab.report import Sample


@dataclass(frozen=True)
class Snapshot:
    sample: Sample
    events: list[str]


class LiveView:
    def __init__(self, slo_seconds: float, day_seconds: float) -> None:
        self.slo = slo_seconds
        self.day_seconds = day_seconds
        self.console = Console()
        self.tty = sys.stdout.isatty()
        self._live: Live | None = None
        self._last_key: tuple[object, ...] = ()
        self._seen_events: set[str] = set()

    def __enter__(self) -> LiveView:
        if self.tty:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    def _clock(self, seconds: float) -> str:
        minutes = int(min(1.0, seconds / self.day_seconds) * 24 * 60)
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    def update(self, snap: Snapshot) -> None:
        if self._live is not None:
            self._live.update(self._render(snap))
        else:
            self._print_changes(snap)

    def _render(self, snap: Snapshot) -> Group:
        s = snap.sample
        over = s.p95_seconds > self.slo
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("time of day", self._clock(s.seconds))
        table.add_row("active users", f"{s.users:,.0f}")
        table.add_row("requests/s", f"{s.rps:,.0f}  (errors {s.error_rate:.1%})")
        latency = Text(
            f"{s.p95_seconds * 1000:,.0f} ms (SLO {self.slo * 1000:.0f} ms)",
            style="bold red" if over else "green",
        )
        table.add_row("p95 latency", latency)
        table.add_row(
            "phase", f"{s.phase}  -> target {s.target}" if s.target != s.phase else str(s.phase)
        )
        table.add_row("step", s.step or "-")
        table.add_row(
            "requests", f"{s.cpu_millicores / 1000:.1f} CPU, {s.memory_bytes / 2**30:.1f} GiB"
        )
        events = Text("\n".join(snap.events[-5:]) or "-", style="dim")
        return Group(
            Text("phaseshift demo", style="bold"),
            table,
            Text("recent events", style="bold"),
            events,
        )

    def _print_changes(self, snap: Snapshot) -> None:
        s = snap.sample
        key = (s.phase, s.target, s.step, s.p95_seconds > self.slo)
        for event in snap.events:
            if event not in self._seen_events:
                self._seen_events.add(event)
                print(f"[{self._clock(s.seconds)}] event {event}", flush=True)
        if key != self._last_key:
            self._last_key = key
            print(
                f"[{self._clock(s.seconds)}] users {s.users:>10,.0f}  rps {s.rps:>8,.0f}  "
                f"p95 {s.p95_seconds * 1000:>6,.0f} ms{' OVER SLO' if key[3] else ''}  "
                f"phase {s.phase} target {s.target}  step {s.step or '-'}",
                flush=True,
            )
