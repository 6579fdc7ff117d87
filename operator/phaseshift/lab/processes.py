"""The lab's background processes: started in their own session, recorded by PID file,
stopped by PID. A PID file is written before anything waits on the process, so a crash
of the starter still leaves `down` a way to stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from phaseshift.lab.wait import wait_for


def spawn(
    pids_dir: Path,
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Starts `argv` detached, its output appended to `log`; returns its PID."""
    pids_dir.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    (pids_dir / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def terminate(pid: int, grace: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds. Returns once the process is gone, so
    its ports are free again, or False if it outlived SIGKILL by another `grace` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if _gone_within(pid, grace):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return _gone_within(pid, grace)


def _gone_within(pid: int, seconds: float) -> bool:
    try:
        wait_for(lambda: not alive(pid), seconds, f"process {pid} to end", poll=0.1)
    except AssertionError:
        return False
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    # Our own child (started in this process) would stay a zombie otherwise.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def exited(pids_dir: Path, names: Iterable[str] | None = None) -> list[str]:
    """Those of `names` (by default: every process recorded in `pids_dir`) that were
    started and are no longer running."""
    wanted = sorted(p.stem for p in pids_dir.glob("*.pid")) if names is None else names
    return [
        name
        for name in wanted
        if (pid := recorded_pid(pids_dir, name)) is not None and not alive(pid)
    ]


def recorded_pid(pids_dir: Path, name: str) -> int | None:
    try:
        return int((pids_dir / f"{name}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
