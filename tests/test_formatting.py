"""harness.formatting: the one place percents, money and "is this a number" are decided."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.formatting import finite, money, percent, percent_value


@pytest.mark.parametrize("x", [None, math.nan, math.inf, -math.inf, "0.5", np.float64("nan")])
def test_what_is_not_a_number_is_shown_as_a_dash(x):
    assert not finite(x)
    assert percent(x) == percent_value(x) == percent(x, significant=3) == "—"


def test_percents():
    assert finite(0) and finite(np.float32(0.25)) and finite(np.int64(3))
    assert percent(0.1234) == "12.3%" and percent_value(0.1234) == "12.3" and percent(0) == "0.0%"
    assert percent(np.float64(0.5)) == "50.0%" and percent(1) == "100.0%"
    assert percent(0.001, significant=3) == "0.1%" and percent(0.000123, significant=3) == "0.0123%"


def test_money_and_its_old_import_path():
    from harness.records import money as from_records

    assert from_records is money
    assert money(0) == "$0" and money(1234.5) == "$1,234.50" and money(0.000123) == "$0.000123"
    assert money(None) == money(math.nan) == "—"
