"""How every command writes OPs, sizes and counts: one set of helpers, so `search`,
`status`, `derive`, `show`, `profile`, `train` and `export` print the same quantity the
same way (2.05M OPs everywhere, never 2.05e+06 in one place and 2.050M in another).

- :func:`count`: OPs, BOPs, FLOPs, MACs and parameters: 3 significant digits and an SI
  suffix (k, M, G, T): ``512``, ``98.3k``, ``2.05M``, ``163M``, ``1.68G``.
- :func:`size`: bytes in decimal units (the ones file sizes and the papers' model sizes
  use): ``512 B``, ``43.4 kB``, ``1.44 MB``, ``2.10 GB``.
- :func:`plural`: a count with its noun: ``1 trial``, ``2 trials``.
- :func:`parse_count`: the inverse of :func:`count` for what a person types back
  (``--max-ops 2.2M``): ``2200000``, ``2.2e6``, ``98.3k``, ``2.2M``, ``1.16G``.

Tables that carry the unit in a column header (``status``'s ``OPs (M)``) print scaled
numbers without a suffix; trials.csv and JSON keep the raw values.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

# the suffixes count() prints, largest first, as powers of ten; parse_count reads them
# back (and K, which people write for k)
_POWERS = {"T": 12, "G": 9, "M": 6, "k": 3}
_SUFFIXES = tuple((10.0**power, suffix) for suffix, power in _POWERS.items())
_READ_POWERS = {"": 0, "K": 3, **_POWERS}
_COUNT = re.compile(
    r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([" + "".join(_READ_POWERS) + r"]?)\s*"
)
COUNT_FORMS = "a number, optionally with the suffix k, M, G or T as printed (2.2M, 98.3k, 2200000)"


def _three(value: float, digits: int = 3) -> str:
    """``digits`` (3) significant digits, trailing zeros kept (11.0, 2.05, 163)."""
    text = f"{value:#.{digits}g}"
    return text.rstrip(".") if "e" not in text else f"{value:.0f}"


def count(value: float, digits: int = 3) -> str:
    """An operation or parameter count: ``2.05M``, ``98.3k``, ``1.68G``, ``512``
    (``digits`` significant digits: more where two close counts must read apart)."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    for scale, suffix in _SUFFIXES:
        if magnitude >= scale * 0.9995:  # 999,500 prints as 1.00M, not 1e+03k
            return _three(value / scale, digits) + suffix
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}g}"


def parse_count(text: str) -> float:
    """``2.2M`` -> 2200000.0: a count as :func:`count` prints it (k, M, G, T; ``K`` too),
    or a plain number (``2200000``, ``2.2e6``). ValueError naming the forms otherwise."""
    match = _COUNT.fullmatch(str(text))
    if match is None:
        raise ValueError(f"{str(text)[:40]!r} is not a count; give {COUNT_FORMS}")
    number, suffix = match.groups()
    # in decimal: 2.05M is 2050000.0, not 2049999.9999999998
    return float(Decimal(number).scaleb(_READ_POWERS[suffix]))


def size(num_bytes: float, digits: int = 3) -> str:
    """A size in bytes, decimal units: ``512 B``, ``43.4 kB``, ``1.44 MB``."""
    if not math.isfinite(num_bytes):
        return f"{num_bytes} B"
    magnitude = abs(num_bytes)
    for scale, suffix in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if magnitude >= scale * 0.9995:
            return f"{_three(num_bytes / scale, digits)} {suffix}"
    return f"{num_bytes:.0f} B"


def plural(number: int, noun: str) -> str:
    """``1 trial``, ``2 trials``: a count with its noun."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
