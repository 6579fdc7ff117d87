"""Kubernetes resource quantities as numbers, for totals and comparisons."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}


@lru_cache(maxsize=1024)
def parse_quantity(text: str) -> Decimal:
    """The value of a quantity such as 250m, 1.5, 512Mi or 1e3 in base units."""
    text = str(text).strip()
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return _number(text[: -len(suffix)], text) * factor
    if text and text[-1] in _DECIMAL:
        return _number(text[:-1], text) * _DECIMAL[text[-1]]
    return _number(text, text)


def _number(digits: str, original: str) -> Decimal:
    try:
        return Decimal(digits)
    except InvalidOperation:
        raise ValueError(f"not a Kubernetes quantity: {original!r}") from None


def cpu_millicores(text: str) -> int:
    # Kubernetes rounds CPU up to whole millicores.
    return int((parse_quantity(text) * 1000).to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(text: str) -> int:
    return int(parse_quantity(text).to_integral_value(rounding="ROUND_CEILING"))
