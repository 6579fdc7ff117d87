"""A real Prometheus (the Debian package) on loopback, for tests, the demo and `cluster up`.

Targets are file-based service discovery entries, so adding one needs no restart and no
reload. The server keeps its port and data across stop()/start(), which lets a test take
Prometheus away and bring the same one back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import requests
import yaml
from prometheus_api_client import PrometheusConnect

from phaseshift.lab.ports import free_port

PROMETHEUS_BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"


class PrometheusError(RuntimeError):
    """Prometheus could not be started or did not scrape a target in time."""


class CountingSession(requests.Session):
    """A requests session that counts the HTTP requests sent through it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.requests += 1
        return super().request(*args, **kwargs)

    def client(self, url: str) -> PrometheusConnect:
        """A Prometheus client whose requests this session counts (a signals ClientFactory)."""
        return PrometheusConnect(url, session=self)


class PrometheusServer:
    def __init__(self, directory: Path, *, scrape_interval: str = "1s") -> None:
        self.directory = directory
        self.scrape_interval = scrape_interval

    @property
    def _pid_file(self) -> Path:
        return self.directory / "prometheus.pid"

    @property
    def _port_file(self) -> Path:
        return self.directory / "port"

    @property
    def _targets_dir(self) -> Path:
        return self.directory / "targets"

    @property
    def port(self) -> int:
        if not self._port_file.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self._port_file.write_text(str(free_port()))
        return int(self._port_file.read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def _write_config(self) -> Path:
        self._targets_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "phaseshift",
                    "honor_labels": True,
                    "scrape_timeout": "1s",
                    "file_sd_configs": [
                        {"files": [str(self._targets_dir / "*.json")], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
        path = self.directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, timeout: float = 30.0) -> None:
        if self.pid() is not None:
            return
        if not os.access(PROMETHEUS_BINARY, os.X_OK):
            raise PrometheusError(
                "no prometheus binary; install the Debian package: apt-get install prometheus"
            )
        config = self._write_config()
        log = (self.directory / "prometheus.log").open("ab")
        process = subprocess.Popen(
            [
                PROMETHEUS_BINARY,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--query.lookback-delta=1m",
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {process.returncode}; see {self.directory}/prometheus.log"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus did not become ready on {self.url} in {timeout:.0f}s")

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            # Reap it if it is our child, so it does not linger as a zombie.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        self._pid_file.unlink(missing_ok=True)

    def add_target(
        self,
        job: str,
        address: str,
        labels: dict[str, str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        """Adds a scrape target and waits until Prometheus has scraped it successfully."""
        self._targets_dir.mkdir(parents=True, exist_ok=True)
        path = self._targets_dir / f"{job}.json"
        groups = json.loads(path.read_text()) if path.exists() else []
        groups.append({"targets": [address], "labels": {"job": job, **(labels or {})}})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(path)
        self.wait_scraped(address, timeout=timeout)

    def remove_targets(self, job: str) -> None:
        (self._targets_dir / f"{job}.json").unlink(missing_ok=True)

    def wait_scraped(self, address: str, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                active = httpx.get(f"{self.url}/api/v1/targets", timeout=2).json()["data"][
                    "activeTargets"
                ]
            except (httpx.HTTPError, KeyError, ValueError):
                active = []
            for target in active:
                if target["labels"].get("instance") == address and target["health"] == "up":
                    return
            time.sleep(0.2)
        raise PrometheusError(f"prometheus did not scrape {address} within {timeout:.0f}s")
