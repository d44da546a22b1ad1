"""How numbers are shown everywhere (CLI tables, reports, messages): percents, money, and what counts as a number."""

from __future__ import annotations

import math
from numbers import Real

UNKNOWN = "—"  # a number we cannot compute is shown as this, never as 0


def finite(x: object) -> bool:
    """A real number that is not NaN or infinite (None, NaN, ±inf and non-numbers are not)."""
    return isinstance(x, Real) and math.isfinite(x)


def percent(x: object, *, sign: bool = True, significant: int | None = None) -> str:
    """A fraction as a percent: 0.1234 -> "12.3%" ("12.3" without `sign`, for a column headed "%");
    `significant` digits instead of one decimal (small rates: 0.0001 -> "0.01%"); "—" when unknown."""
    if not finite(x):
        return UNKNOWN
    value = 100 * float(x)  # type: ignore[arg-type]  # finite() checked it is a real number
    text = f"{value:.{significant}g}" if significant else f"{value:.1f}"
    return text + "%" if sign else text


def money(x: object) -> str:
    """A cost in US dollars as every command and report shows it: "—" when unknown, "$0" only for a true
    zero, cents from $1 up, else three significant digits (never exponent notation, never a tiny cost as 0)."""
    if not isinstance(x, (int, float)) or not math.isfinite(x):
        return UNKNOWN
    if x == 0:
        return "$0"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    decimals = min(10, 2 - math.floor(math.log10(abs(x))))
    return f"${x:.{decimals}f}"


def percent_value(x: object) -> str:
    """A fraction as a percent without the sign, for a column headed "%": 0.1234 -> "12.3"; "—" when unknown."""
    return percent(x, sign=False)
