"""tests/realnode/test_real_node.py still imports wait_for from here; the plan helpers
live in phaseshift.lab.plans."""

from phaseshift.lab.wait import wait_for

__all__ = ["wait_for"]
