"""The demo's record: samples over the run, the summary, the check, markdown and a chart."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    seconds: float
    """Wall seconds since the day began."""
    users: float
    rps: float
    p95_seconds: float
    error_rate: float
    phase: int
    target: int
    step: str
    cpu_millicores: int
    memory_bytes: int


@dataclass(frozen=True)
class Move:
    seconds: float
    from_phase: int
    to_phase: int
    duration_seconds: float


@dataclass
class Summary:
    day_minutes_per_second: float
    slo_seconds: float
    minutes_over_slo: float = 0.0
    moves: list[Move] = field(default_factory=list)
    minutes_in_phase: dict[int, float] = field(default_factory=dict)
    peak_cpu_millicores: int = 0
    peak_memory_bytes: int = 0
    avg_cpu_millicores: float = 0.0
    phase4_cpu_millicores: int = 0
    phase4_memory_bytes: int = 0
    peak_users: float = 0.0
    peak_phase: int = 0
    final_phase: int = 0

    def direction_changes(self) -> int:
        directions = [1 if m.to_phase > m.from_phase else -1 for m in self.moves]
        return sum(1 for a, b in itertools.pairwise(directions) if a != b)

    def check(self, peaks: int) -> list[str]:
        """What --check fails on; empty when the day went as it should."""
        problems = []
        if self.peak_phase < 4:
            problems.append(f"the plan never reached phase 4 (highest: {self.peak_phase})")
        if self.final_phase not in (1, 2):
            problems.append(f"the plan ended in phase {self.final_phase}, not 1 or 2")
        if self.direction_changes() > peaks:
            path = " ".join(f"{m.from_phase}->{m.to_phase}" for m in self.moves)
            problems.append(f"flapping: {self.direction_changes()} direction changes ({path})")
        return problems

    def lines(self) -> list[str]:
        moves = ", ".join(f"{m.from_phase}->{m.to_phase}" for m in self.moves) or "none"
        phases = ", ".join(
            f"phase {p}: {self.minutes_in_phase[p]:.0f} min" for p in sorted(self.minutes_in_phase)
        )
        saved = 1 - self.avg_cpu_millicores / self.phase4_cpu_millicores
        return [
            f"peak users: {self.peak_users:,.0f}; highest phase {self.peak_phase}, "
            f"final phase {self.final_phase}",
            f"minutes over the p95 SLO ({self.slo_seconds * 1000:.0f} ms): "
            f"{self.minutes_over_slo:.0f} of {24 * 60} (day time)",
            f"transitions ({len(self.moves)}): {moves}",
            f"time in each phase (day time): {phases}",
            f"peak requests: {self.peak_cpu_millicores / 1000:.1f} CPU, "
            f"{self.peak_memory_bytes / 2**30:.1f} GiB; phase 4 all day: "
            f"{self.phase4_cpu_millicores / 1000:.1f} CPU, {self.phase4_memory_bytes / 2**30:.1f} GiB",
            f"CPU requested over the day: {self.avg_cpu_millicores / 1000:.1f} CPU on average, "
            f"{saved:.0%} less than phase 4 all day",
        ]


def summarise(
    samples: Sequence[Sample],
    moves: Sequence[Move],
    *,
    day_seconds: float,
    slo_seconds: float,
    phase4: tuple[int, int],
) -> Summary:
    per_second = 24 * 60 / day_seconds
    summary = Summary(per_second, slo_seconds, moves=list(moves))
    summary.phase4_cpu_millicores, summary.phase4_memory_bytes = phase4
    weighted_cpu = total = 0.0
    for a, b in itertools.pairwise(samples):
        dt = b.seconds - a.seconds
        total += dt
        weighted_cpu += a.cpu_millicores * dt
        if a.p95_seconds > slo_seconds:
            summary.minutes_over_slo += dt * per_second
        summary.minutes_in_phase[a.phase] = summary.minutes_in_phase.get(a.phase, 0.0) + (
            dt * per_second
        )
    if samples:
        summary.peak_cpu_millicores = max(s.cpu_millicores for s in samples)
        summary.peak_memory_bytes = max(s.memory_bytes for s in samples)
        summary.peak_users = max(s.users for s in samples)
        summary.peak_phase = max(s.phase for s in samples)
        summary.final_phase = samples[-1].phase
        summary.avg_cpu_millicores = weighted_cpu / total if total else samples[0].cpu_millicores
    return summary


def write_chart(samples: Sequence[Sample], moves: Sequence[Move], slo: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server or in CI
    import matplotlib.pyplot as plt

    t = [s.seconds for s in samples]
    fig, (ax_users, ax_p95, ax_phase) = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    ax_users.plot(t, [max(1.0, s.users) for s in samples], color="tab:blue")
    ax_users.set_yscale("log")
    ax_users.set_ylabel("active users")
    ax_p95.plot(t, [s.p95_seconds * 1000 for s in samples], color="tab:orange")
    ax_p95.axhline(slo * 1000, color="tab:red", linestyle="--", label=f"SLO {slo * 1000:.0f} ms")
    ax_p95.set_yscale("log")
    ax_p95.set_ylabel("p95 latency (ms)")
    ax_p95.legend(loc="upper right")
    ax_phase.step(t, [s.phase for s in samples], where="post", color="tab:green", label="phase")
    ax_phase.step(
        t, [s.target for s in samples], where="post", color="grey", linestyle=":", label="target"
    )
    ax_phase.set_yticks([1, 2, 3, 4])
    ax_phase.set_ylabel("phase")
    ax_phase.set_xlabel("seconds (the whole day)")
    ax_phase.legend(loc="upper right")
    for move in moves:
        for ax in (ax_users, ax_p95, ax_phase):
            ax.axvline(move.seconds, color="grey", alpha=0.4)
        ax_users.annotate(
            f"{move.from_phase}->{move.to_phase}",
            (move.seconds, 1),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            va="top",
        )
    fig.suptitle("phaseshift demo: users, p95 latency and phase over a compressed day")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_markdown(
    summary: Summary, notes: Sequence[str], chart: Path, path: Path, problems: Sequence[str]
) -> None:
    lines = ["# phaseshift demo report", "", f"![users, p95 and phase]({chart.name})", ""]
    lines += ["## Summary", ""] + [f"- {line}" for line in summary.lines()] + [""]
    lines += ["## Transitions", "", "| at (s) | from | to | duration (s) |", "|---|---|---|---|"]
    lines += [
        f"| {m.seconds:.0f} | {m.from_phase} | {m.to_phase} | {m.duration_seconds:.1f} |"
        for m in summary.moves
    ]
    lines += ["", "## How this ran", ""] + [f"- {n}" for n in notes]
    if problems:
        lines += ["", "## Check failed", ""] + [f"- {p}" for p in problems]
    path.write_text("\n".join(lines) + "\n")
