"""Where the locally built control-plane binaries live, and building them when absent.

tools/build.sh compiles etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok and kwokctl from Go modules (no release downloads are reachable) into a cache
outside the repository, keyed by the pinned versions in tools/versions.env; tools/kafka.sh
resolves the Kafka broker the sample app's tests use from Maven Central beside them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
TOOLS_DIR = REPO_ROOT / "tools"
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kwokctl",
)


NODE_COMPONENTS = ("kubelet", "kube-proxy", "coredns", "metrics-server")


class BinariesMissing(RuntimeError):
    """The control-plane binaries are not built and cannot be built here."""


def cache_root() -> Path:
    explicit = os.environ.get("PHASESHIFT_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "phaseshift"


def pinned_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in (TOOLS_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key] = value
    return versions


def bin_dir() -> Path:
    v = pinned_versions()
    name = f"k8s-{v['KUBERNETES_VERSION']}_etcd-{v['ETCD_VERSION']}_kwok-{v['KWOK_VERSION']}"
    return cache_root() / "bin" / name


def node_bin_dir() -> Path:
    """The real node's binaries (`tools/build.sh node`): kubelet, kube-proxy, CoreDNS, metrics-server."""
    v = pinned_versions()
    name = (
        f"node-k8s-{v['KUBERNETES_VERSION']}_coredns-{v['COREDNS_VERSION']}"
        f"_metrics-server-{v['METRICS_SERVER_VERSION']}"
    )
    return cache_root() / "bin" / name


def prometheus_bin_dir() -> Path:
    """The Prometheus of manifests/ on the real node (`tools/build.sh prometheus`)."""
    return cache_root() / "bin" / f"prometheus-{pinned_versions()['PROMETHEUS_VERSION']}"


def kafka_dir() -> Path:
    """Where tools/kafka.sh puts the Kafka broker's jars (lib/*.jar)."""
    return cache_root() / f"kafka-{pinned_versions()['KAFKA_VERSION']}"


def _kafka_resolved() -> bool:
    """The broker's jars are there and were resolved from tools/kafka/pom.xml as it is now
    (tools/kafka.sh keeps the pom's sha256 beside lib/), so a changed pom resolves again."""
    jar = kafka_dir() / "lib" / f"kafka_2.13-{pinned_versions()['KAFKA_VERSION']}.jar"
    stamp = kafka_dir() / "pom.sha256"
    pom = hashlib.sha256((TOOLS_DIR / "kafka" / "pom.xml").read_bytes()).hexdigest()
    return jar.exists() and stamp.exists() and stamp.read_text().strip() == pom


def ensure_kafka() -> Path:
    """Returns the Kafka directory, resolving it from Maven Central when absent or stale."""
    if _kafka_resolved():
        return kafka_dir()
    script = TOOLS_DIR / "kafka.sh"
    result = subprocess.run([str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0 or not _kafka_resolved():
        raise BinariesMissing(
            f"could not resolve Kafka with {script} (exit {result.returncode}); it needs a "
            "JRE >= 17, Maven and Maven Central — run it by hand to see why"
        )
    return kafka_dir()


def missing(directory: Path | None = None, components: tuple[str, ...] = COMPONENTS) -> list[str]:
    directory = directory or bin_dir()
    return [c for c in components if not os.access(directory / c, os.X_OK)]


def _ensure(target: str, directory: Path, components: tuple[str, ...]) -> Path:
    if not missing(directory, components):
        return directory
    script = TOOLS_DIR / "build.sh"
    result = subprocess.run([str(script), target], stdout=subprocess.PIPE, text=True, check=False)
    absent = missing(directory, components)
    if result.returncode != 0 or absent:
        raise BinariesMissing(
            f"could not build {', '.join(absent)} with {script} {target} (exit {result.returncode}); "
            "it needs Go >= 1.26 and the Go module proxy — run it by hand to see why"
        )
    return directory


def ensure_built() -> Path:
    """Returns the control plane's binary directory, building what is missing (minutes on a
    cold cache)."""
    return _ensure("control-plane", bin_dir(), COMPONENTS)


def ensure_node_built() -> Path:
    """Returns the real node's binary directory, building what is missing."""
    return _ensure("node", node_bin_dir(), NODE_COMPONENTS)


def ensure_prometheus_built() -> Path:
    """Returns the directory of the Prometheus binary, building it when missing."""
    return _ensure("prometheus", prometheus_bin_dir(), ("prometheus",))


def postgres_bin_dir(debian: Path = Path("/usr/lib/postgresql")) -> Path:
    """The directory of the PostgreSQL server binaries (initdb, postgres, pg_ctl,
    pg_basebackup) the tests run: $PG_BIN when set, else `pg_config --bindir`, else the
    newest of Debian's /usr/lib/postgresql/<major>/bin, else wherever initdb is on PATH.
    Any major version from 13 on serves."""
    explicit = os.environ.get("PG_BIN")
    candidates = [Path(explicit)] if explicit else []
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    if debian.is_dir():
        majors = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        candidates += [p / "bin" for p in reversed(majors)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    raise BinariesMissing(
        "no PostgreSQL server binaries (initdb, postgres) found: set PG_BIN, or install "
        "them (Debian/Ubuntu: apt-get install postgresql)"
    )
