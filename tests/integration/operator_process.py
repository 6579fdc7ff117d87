"""The operator process now lives in phaseshift.lab.operator_process; tests/realnode still
imports it under this name."""

from phaseshift.lab.operator_process import OperatorProcess

__all__ = ["OperatorProcess"]
