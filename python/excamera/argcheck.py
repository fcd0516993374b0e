"""Range checks of numeric settings, each failing as one line that names the setting.

argparse only checks that a value parses as a number; a negative timeout, a port above 65535
or a NaN parses fine and then fails deep inside (a traceback from bind()) or, worse, is
silently taken to mean something. Every command and every typed settings object checks its
numbers with these before any work starts. ``name`` is a flag (``-t``) or a settings field
(``port``): a :class:`~excamera.errors.SettingsError` raised for a field is shown with the
field's flag on the command line (``excamera.cli``).
"""

from __future__ import annotations

from .errors import SettingsError

MAX_PORT = 65535


def check_port(name: str, value: int, *, zero_picks: bool = True) -> int:
    """A TCP port, 1..65535; 0 too when ``zero_picks`` (the system then picks a free one)."""
    lowest = 0 if zero_picks else 1
    if not lowest <= value <= MAX_PORT:
        raise SettingsError.value(name, value, f"a port is {lowest}..{MAX_PORT}")
    return value


def check_int(name: str, value: int, *, minimum: int, maximum: int | None = None) -> int:
    """An integer in ``minimum..maximum`` (no upper end when ``maximum`` is None)."""
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
        raise SettingsError.value(name, value, f"must be {bound}")
    return value


def check_number(name: str, value: float, *, minimum: float = 0.0,
                 above_minimum: bool = False, maximum: float | None = None) -> float:
    """A finite number at least ``minimum`` (strictly above it with ``above_minimum``)."""
    low_ok = value > minimum if above_minimum else value >= minimum
    high_ok = maximum is None or value <= maximum
    import math  # here, not at import: a shared library to load, which decode's start-up skips

    if not (math.isfinite(value) and low_ok and high_ok):
        low = f"more than {minimum:g}" if above_minimum else f"at least {minimum:g}"
        high = f" and at most {maximum:g}" if maximum is not None else ""
        raise SettingsError.value(name, float(value), f"must be a finite number {low}{high}")
    return value
