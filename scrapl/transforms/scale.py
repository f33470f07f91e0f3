"""Scale-robust evaluation of positively homogeneous transforms.

Scattering transforms are (up to the JTFS's ``1e-12`` modulus floor) positively
homogeneous of degree one: ``S(c x) = |c| S(x)``.  Computed directly in float32, an
input of amplitude ``1e20`` overflows in the modulus (``re**2 + im**2`` exceeds
``3.4e38``: NaN), and one of amplitude ``1e-16`` drowns in the floor or underflows
(40-100 % wrong).  :func:`normalise` divides each batch row by a power of two near its
peak amplitude and :func:`rescale` multiplies the output back: powers of two scale
floating-point numbers exactly, so results at ordinary amplitudes are unchanged
(bit for bit without a floor) while the usable range becomes float32's whole range.
Cost: one max-abs reduction over the input and two element-wise products.

The scale is a constant for autograd (detached): since ``S`` is homogeneous, its
gradient is homogeneous of degree zero and ``d/dx [s S(x / s)] = S'(x)`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scrapl.checks import peak_abs

__all__ = ["normalise", "rescale", "row_peaks", "row_scales", "scales_of_peaks"]

#: Exponents are clamped to this range so that ``2**e`` and ``2**-e`` are both
#: normal float32 numbers.
_MAX_EXP: int = 120


#: ``(integer dtype, mantissa bits, exponent bias)`` of the float dtypes whose powers
#: of two :func:`_pow2` writes straight from their bit pattern.
_LAYOUT = {torch.float32: (torch.int32, 23, 127), torch.float64: (torch.int64, 52, 1023)}


def _pow2(e: Tensor, dtype: torch.dtype) -> Tensor:
    """``2.0 ** e`` exactly, for integer ``e`` within ``[-_MAX_EXP, _MAX_EXP]``: the
    float's bit pattern ``(e + bias) << mantissa`` (two integer operations and a
    reinterpretation, instead of ``ldexp``'s several kernels)."""
    layout = _LAYOUT.get(dtype)
    if layout is None:
        return torch.ldexp(torch.ones(e.shape, dtype=dtype, device=e.device), e)
    itype, mant, bias = layout
    return torch.bitwise_left_shift(e.to(itype) + bias, mant).view(dtype)


def row_peaks(x: Tensor) -> Tensor:
    """``max |x[b]|`` over the last axis of ``(B, N)``: ``(B,)``, NaN for a row holding
    a NaN (:func:`scrapl.checks.peak_abs`: no full-size copy of a large ``x``)."""
    return peak_abs(x, dim=-1)


def scales_of_peaks(peaks: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(s, 1 / s)`` of dtype ``dtype`` for row peaks ``(B,)``: ``s`` is the power of
    two with ``0.5 <= peak / s < 1`` (1 for a zero peak), its exponent clamped to
    ``[-120, 120]`` (``1 / s`` is then exact)."""
    with torch.no_grad():
        _, e = torch.frexp(peaks)
        s = _pow2(e.clamp_(-_MAX_EXP, _MAX_EXP), dtype)
        return s, torch.reciprocal(s)


def row_scales(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(s, 1 / s)`` for ``x`` of shape ``(B, N)``: ``s`` (``(B,)``, dtype of ``x``) is
    the power of two with ``0.5 <= max|x[b]| / s[b] < 1`` (1 for an all-zero row)."""
    return scales_of_peaks(row_peaks(x), x.dtype)


def normalise(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(x / s, s)`` for ``x`` of shape ``(B, N)``, ``s`` of :func:`row_scales`."""
    s, inv = row_scales(x)
    return x * inv[:, None], s


def rescale(out: Tensor, s: Tensor) -> Tensor:
    """``out * s`` with ``s`` (``(B,)``) broadcast over every dimension of ``out``
    after the first (``(B, ...)``)."""
    return out * s.view(-1, *([1] * (out.dim() - 1)))
