"""Golden files: examples/shop.yaml in each phase, exactly as `phaseshift plan` prints it.

After an intended change to the renderer, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/render/test_render_golden.py
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from phaseshift.planview import plan_command

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
SHOP = ROOT / "examples" / "shop.yaml"


@pytest.mark.parametrize("phase", [1, 2, 3, 4])
def test_shop_renders_as_recorded(phase: int) -> None:
    out = io.StringIO()
    assert plan_command(SHOP, phase, None, out=out) == 0
    golden = GOLDEN / f"phase{phase}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(out.getvalue())
    assert golden.exists(), f"{golden} missing: run with UPDATE_GOLDEN=1 to record it"
    assert out.getvalue() == golden.read_text(), f"phase {phase} differs from {golden.name}"
