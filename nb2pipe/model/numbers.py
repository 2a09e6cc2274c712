"""Non-finite floats in strict JSON, which has no NaN or infinity.

They travel as a flag ("nan", "inf", "-inf") beside a text value ("NaN", "Infinity",
"-Infinity"); only a flagged text is decoded back, so a str that happens to read "NaN" stays a
str. Metrics, metrics.json and cache keys all use these spellings.
"""

from __future__ import annotations

import math
from typing import Any

TEXT_OF_FLAG = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def nonfinite_flag(value: Any) -> str | None:
    """"nan", "inf" or "-inf" for a non-finite float; None for anything else."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "nan"
        return "inf" if value > 0 else "-inf"
    return None


def encode_float(value: Any) -> tuple[Any, str | None]:
    """(JSON-safe value, flag): a non-finite float becomes its text and flag; the rest is kept."""
    flag = nonfinite_flag(value)
    return (TEXT_OF_FLAG[flag], flag) if flag is not None else (value, None)


def decode_float(value: Any, flag: str | None) -> Any:
    """The inverse of encode_float."""
    if flag in TEXT_OF_FLAG and isinstance(value, str):
        return float(flag)
    return value
