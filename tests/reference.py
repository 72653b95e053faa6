"""A deliberately plain, independent model of the numeric contract for testing golden.

Per element, in Python integers and exact fractions: no numpy float arithmetic at all. Values
are rounded to a binary format by an explicit round-to-nearest-even on exact rationals.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

INF = float("inf")


def round_to_format(x: Fraction, mant_bits: int, emin: int, emax: int) -> Fraction | float:
    """Round the exact value ``x`` to a binary format with ``mant_bits`` fraction bits,
    minimum normal exponent ``emin`` and maximum exponent ``emax``: nearest, ties to even,
    subnormals kept, overflow to +-inf. Returns a Fraction (or +-inf); zero keeps no sign."""
    if x == 0:
        return Fraction(0)
    sign = -1 if x < 0 else 1
    a = abs(x)
    e = math.floor(math.log2(a.numerator) - math.log2(a.denominator))
    # fix floating log error
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    e = max(e, emin)
    quantum = Fraction(2) ** (e - mant_bits)
    q, r = divmod(a, quantum)
    q = int(q)
    if r > quantum / 2 or (r == quantum / 2 and q % 2 == 1):
        q += 1
    val = q * quantum
    max_val = (2 - Fraction(2) ** -mant_bits) * Fraction(2) ** emax
    if val > max_val:
        return sign * INF
    return sign * val


def fp16_bits_to_value(bits: int) -> Fraction | float:
    s, e, m = bits >> 15, (bits >> 10) & 0x1F, bits & 0x3FF
    if e == 0x1F:
        return (-INF if s else INF) if m == 0 else float("nan")
    if e == 0:
        v = Fraction(m, 1024) * Fraction(2) ** -14
    else:
        v = (1 + Fraction(m, 1024)) * Fraction(2) ** (e - 15)
    return -v if s else v


def to_fp16_value(x: float) -> Fraction | float:
    """float32 value (given as a Python float) -> the fp16 value it rounds to."""
    if math.isinf(x):
        return x
    return round_to_format(Fraction(x), 10, -14, 15)


def fp32_add_exact(a: Fraction | float, b: Fraction | float) -> Fraction | float:
    if isinstance(a, float) or isinstance(b, float):
        return float(a) + float(b)  # infinities only
    return round_to_format(a + b, 23, -126, 127)


def value_to_fp32_bits(v: Fraction | float, negative_zero: bool = False) -> int:
    if v == 0:
        return 0x80000000 if negative_zero else 0
    return struct.unpack("<I", struct.pack("<f", float(v)))[0]


def rne_int(x: Fraction) -> int:
    q = math.floor(x)
    r = x - q
    if r > Fraction(1, 2) or (r == Fraction(1, 2) and q % 2 == 1):
        q += 1
    return q


def to_int8_value(x: float, input_scale: float) -> int:
    if math.isinf(x):
        return 127 if x > 0 else -128
    prod = round_to_format(Fraction(x) * Fraction(input_scale), 23, -126, 127)  # fp32 multiply
    if isinstance(prod, float):
        return 127 if prod > 0 else -128
    return max(-128, min(127, rne_int(prod)))
