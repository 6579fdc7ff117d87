"""`phaseshift demo --check`, as CI runs it: a compressed day on its own local cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from phaseshift.lab import binaries
from phaseshift.lab.cluster import LocalCluster

pytestmark = pytest.mark.integration


def test_demo_check_climbs_to_phase_4_and_back(tmp_path: Path) -> None:
    try:
        binaries.ensure_built()
    except binaries.BinariesMissing as e:
        pytest.fail(f"the local control plane could not be built (tools/build.sh): {e}")
    name = f"demo-test-{uuid.uuid4().hex[:6]}"
    results = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "phaseshift.cli", "demo", "--check", "--results", str(results)],
        env={**os.environ, "PHASESHIFT_DEMO_CLUSTER": name},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert (results / "demo.md").read_text().startswith("# phaseshift demo report")
    assert (results / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1->2, 2->3, 3->4, 4->3, 3->2" in output
    # The demo tears down everything it started.
    assert not LocalCluster(name).exists()
