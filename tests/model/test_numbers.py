"""Non-finite floats in strict JSON: one spelling for metrics, metrics.json and cache keys."""

from __future__ import annotations

import json
import math

import pytest

from nb2pipe.model.numbers import decode_float, encode_float, nonfinite_flag


@pytest.mark.parametrize("value, encoded", [
    (float("nan"), ("NaN", "nan")),
    (float("inf"), ("Infinity", "inf")),
    (float("-inf"), ("-Infinity", "-inf")),
    (1.5, (1.5, None)),
    ("NaN", ("NaN", None)),
    (None, (None, None)),
    (7, (7, None)),
])
def test_encode_and_decode(value, encoded):
    assert encode_float(value) == encoded
    json.dumps(encoded[0], allow_nan=False)
    back = decode_float(*encoded)
    assert back == value or (math.isnan(back) and math.isnan(value))
    assert nonfinite_flag(value) == encoded[1]


def test_only_flagged_text_is_decoded():
    assert decode_float("NaN", None) == "NaN"  # a str metric that reads "NaN" stays a str
    assert decode_float(None, "not a scalar (list)") is None
