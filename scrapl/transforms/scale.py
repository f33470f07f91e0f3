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

__all__ = ["normalise", "rescale"]

#: Exponents are clamped to this range so that ``2**e`` and ``2**-e`` are both
#: normal float32 numbers.
_MAX_EXP: int = 120


def normalise(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(x / s, s)`` for ``x`` of shape ``(B, N)``: ``s`` (``(B,)``, dtype of ``x``) is
    the power of two with ``0.5 <= max|x[b]| / s[b] < 1`` (1 for an all-zero row)."""
    with torch.no_grad():
        peak = x.detach().abs().amax(dim=-1)
        _, e = torch.frexp(peak)
        e = e.clamp(-_MAX_EXP, _MAX_EXP)
        s = torch.ldexp(torch.ones_like(peak), e)
        inv = torch.ldexp(torch.ones_like(peak), -e)
    return x * inv[:, None], s


def rescale(out: Tensor, s: Tensor) -> Tensor:
    """``out * s`` with ``s`` (``(B,)``) broadcast over every dimension of ``out``
    after the first (``(B, ...)``)."""
    return out * s.view(-1, *([1] * (out.dim() - 1)))
