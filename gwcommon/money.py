"""Money: integer micro-dollars (1 USD = 1_000_000), parsed exactly and spelt one of a few ways.

Parsing goes through :class:`~decimal.Decimal`, never a float: ``"$1,000.50"`` is exactly
``1_000_500_000``, and an amount finer than one micro-dollar is refused, not rounded.

Each formatter is a *named* spelling that a screen has shown since it was written. They differ on
purpose (a budget reads ``$50``, a bill ``$50.00``, a CSV cell ``50.000000``, a one-line activity
summary ``$0.0326``), and every place that shows money calls one of them instead of its own copy:

=====================  ==============  =======================================================
function               12_345_678 →    used for
=====================  ==============  =======================================================
:func:`decimal`        ``12.345678``   machine-readable cells (CSV, report columns); no ``$``
:func:`budget`         ``$12.345678``  budget amounts: cents trimmed when whole (``$50``)
:func:`dollars`        ``$12.345678``  always cents, more digits only when needed (``$50.00``)
:func:`cents`          ``$12.35``      spend, rounded half-up to the cent
:func:`four_places`    ``$12.3457``    activity lines, rounded half-up to 1/10,000 dollar
:func:`glance`         ``$12.35``      the TUI's narrow columns (float, see its docstring)
=====================  ==============  =======================================================
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
MAX_MICROS = 2**63 - 1  # int64: what every proto money field holds

# Plain digits, or digits grouped by commas in threes ("1,000,000"); optional decimals.
AMOUNT_RE = re.compile(r"^(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d+)?$|^\.\d+$", re.ASCII)
AMOUNT_HELP = "dollars such as 50, 12.5 or $1,000.50"


def parse_usd(text: str) -> int:
    """``"$1,000.50"`` → ``1_000_500_000``, exactly; ``ValueError(reason)`` otherwise.

    Surrounding spaces and one leading ``$`` are ignored. The reason is a phrase for the caller
    to put after the value it shows (``invalid amount '1.2345678': at most 6 decimal places…``).
    """
    cleaned = text.strip().removeprefix("$").strip()
    if not AMOUNT_RE.match(cleaned):
        raise ValueError(f"expected {AMOUNT_HELP}")
    try:
        amount = Decimal(cleaned.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex already ruled this out
        raise ValueError(f"expected {AMOUNT_HELP}") from None
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError("at most 6 decimal places (one micro-dollar)")
    value = int(micros)
    if value > MAX_MICROS:
        raise ValueError("too large")
    return value


def _split(micros: int) -> tuple[str, int, int]:
    sign = "-" if micros < 0 else ""
    dollars_part, frac = divmod(abs(micros), MICROS_PER_USD)
    return sign, dollars_part, frac


def decimal(micros: int, places: int = 6) -> str:
    """``12_345`` → ``"0.012345"``: dollars as a plain decimal (no ``$``, no grouping).

    With fewer than 6 ``places`` the value is rounded half-up on the integer micros.
    """
    sign = "-" if micros < 0 else ""
    value = abs(micros)
    if places < 6:
        step = 10 ** (6 - places)
        value = (value + step // 2) // step * step
    whole, frac = divmod(value, MICROS_PER_USD)
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}"[: len(f"{sign}{whole}.") + places]


def budget(micros: int) -> str:
    """``"$50"``, ``"$1,000.50"``, ``"$0.000001"``: cents kept, zeros trimmed, exact."""
    sign, whole, frac = _split(micros)
    text = f"{sign}${whole:,}"
    if frac:
        text += "." + f"{frac:06d}".rstrip("0").ljust(2, "0")
    return text


def dollars(micros: int, *, round_up: bool = False) -> str:
    """``"$50.00"``, ``"$1,000.50"``, ``"$0.125"``: always cents, more digits only when needed.

    ``round_up`` first rounds the amount up to the cent (a limit's headroom is never shown
    larger than it is).
    """
    if round_up:
        micros = -(-abs(micros) // 10_000) * 10_000 * (-1 if micros < 0 else 1)
    sign, whole, frac = _split(micros)
    return f"{sign}${whole:,}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"


def cents(micros: int) -> str:
    """Rounded half-up to cents (spend): ``12_345_678`` → ``"$12.35"``."""
    sign = "-" if micros < 0 else ""
    total = (abs(micros) + 5_000) // 10_000
    return f"{sign}${total // 100:,}.{total % 100:02d}"


def four_places(micros: int) -> str:
    """``32_610`` → ``"$0.0326"``: four decimals, rounded half-up."""
    sign = "-" if micros < 0 else ""
    units = (abs(micros) + 50) // 100  # 1/10_000 dollars
    return f"{sign}${units // 10_000:,}.{units % 10_000:04d}"


def glance(micros: int) -> str:
    """``$12.34`` at a glance: ``$0`` for nothing, four decimals below a cent (``$0.0012``),
    no decimals from $1,000 (``$1,235``). Rounds through a float (half-to-even on the binary
    value), as the TUI always has; never use it where the digits are checked."""
    if micros == 0:
        return "$0"
    sign = "-" if micros < 0 else ""
    value = abs(micros) / MICROS_PER_USD
    if abs(micros) < 10_000:
        return f"{sign}${value:.4f}"
    if value >= 1000:
        return f"{sign}${value:,.0f}"
    return f"{sign}${value:.2f}"
