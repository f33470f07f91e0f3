"""Pure update kernels of P-Adam and P-SAGA (no classes, no hidden state).

Notation (SCRAPL paper, ICLR 2026): ``P`` paths, global step ``k`` (1-based), the
drawn path ``p`` was last drawn at step ``tau_p`` (0 if never), ``g`` is the gradient
produced by path ``p``.

P-Adam (one ``(m_p, v_p)`` pair per path)::

    b1' = beta1 ** ((k - tau_p) / P),   b2' = beta2 ** ((k - tau_p) / P)
    m_p = b1' m_p + (1 - b1') g
    v_p = b2' v_p + (1 - b2') g * g
    g_cur = (m_p / (1 - beta1 ** (k / P))) / sqrt(eps + v_p / (1 - beta2 ** (k / P)))

P-SAGA (one stored direction ``g_hat_q`` per path, ``G`` = paths seen before this
step)::

    g_avg = sum_{q in G} g_hat_q / max(1, |G|)
    direction = g_cur - g_hat_p + g_avg        (g_hat_p = 0 if p not in G)
    g_hat_p = g_cur

The sum over ``G`` is kept as a running sum ``S`` (``S += g_cur - g_hat_p``), so a
step costs O(weights), never O(P x weights).

All tensor kernels take lists of tensors and use ``torch._foreach_*`` ops (one call
per list instead of one per tensor); every list must be of equal length, and the
i-th tensors of all lists share shape, dtype and device.  Scalars are Python floats
computed in double precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "PAdamScalars",
    "beta_pow",
    "one_minus_beta_pow",
    "p_adam_scalars",
    "p_adam_moments_",
    "p_adam_denominators_",
    "p_adam_outputs_",
    "p_saga_apply_",
    "add_scaled_",
]


def beta_pow(beta: float, exponent: float) -> float:
    """``beta ** exponent`` for ``beta`` in ``[0, 1)`` and ``exponent >= 0`` (``0 ** 0 = 1``)."""
    if beta == 0.0:
        return 1.0 if exponent == 0 else 0.0
    return math.exp(exponent * math.log(beta))


def one_minus_beta_pow(beta: float, exponent: float) -> float:
    """``1 - beta ** exponent`` without cancellation for small exponents (``expm1``)."""
    if beta == 0.0:
        return 0.0 if exponent == 0 else 1.0
    return -math.expm1(exponent * math.log(beta))


@dataclass(frozen=True)
class PAdamScalars:
    """Scalars of one P-Adam update of one tensor.

    Attributes:
        decay1: ``b1' = beta1 ** ((k - tau_p) / P)``.
        decay2: ``b2' = beta2 ** ((k - tau_p) / P)``.
        one_minus_decay1: ``1 - b1'`` (computed without cancellation).
        one_minus_decay2: ``1 - b2'``.
        bias1: ``1 - beta1 ** (k / P)`` (bias correction of ``m``).
        bias2: ``1 - beta2 ** (k / P)`` (bias correction of ``v``).
    """

    decay1: float
    decay2: float
    one_minus_decay1: float
    one_minus_decay2: float
    bias1: float
    bias2: float


def p_adam_scalars(step: int, last_step: int, n_paths: int, beta1: float, beta2: float) -> PAdamScalars:
    """Scalars of P-Adam at global step ``step`` (``k``, 1-based) for a path last drawn
    at ``last_step`` (``tau_p``, 0 if never drawn) among ``n_paths`` (``P``) paths.

    Raises:
        ValueError: if ``step < 1``, ``last_step < 0``, ``last_step > step`` or
            ``n_paths < 1``.
    """
    if n_paths < 1:
        raise ValueError(f"n_paths must be >= 1, got {n_paths}")
    if step < 1:
        raise ValueError(f"step (the global step k) must be >= 1, got {step}")
    if not 0 <= last_step <= step:
        raise ValueError(f"last_step (tau_p) must be in [0, step={step}], got {last_step}")
    dt = (step - last_step) / n_paths
    t = step / n_paths
    return PAdamScalars(
        decay1=beta_pow(beta1, dt),
        decay2=beta_pow(beta2, dt),
        one_minus_decay1=one_minus_beta_pow(beta1, dt),
        one_minus_decay2=one_minus_beta_pow(beta2, dt),
        bias1=one_minus_beta_pow(beta1, t),
        bias2=one_minus_beta_pow(beta2, t),
    )


def p_adam_moments_(
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    scalars: Sequence[PAdamScalars],
) -> None:
    """Update the drawn path's moments in place: ``m = b1' m + (1 - b1') g`` and
    ``v = b2' v + (1 - b2') g * g``.

    Args:
        grads: gradients ``g`` (any shapes).
        exp_avgs: first moments ``m_p`` of the drawn path, same shapes as ``grads``.
        exp_avg_sqs: second moments ``v_p`` of the drawn path, same shapes.
        scalars: one :class:`PAdamScalars` per tensor.
    """
    if not grads:
        return
    grads, exp_avgs, exp_avg_sqs = list(grads), list(exp_avgs), list(exp_avg_sqs)
    torch._foreach_lerp_(exp_avgs, grads, [s.one_minus_decay1 for s in scalars])
    torch._foreach_mul_(exp_avg_sqs, [s.decay2 for s in scalars])
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, [s.one_minus_decay2 for s in scalars])


def p_adam_denominators_(
    out: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    scalars: Sequence[PAdamScalars],
    eps: Sequence[float],
    *,
    eps_inside_sqrt: bool = True,
) -> list[float]:
    """Write denominators ``D`` into ``out`` and return scales ``c`` such that
    ``g_cur = c * m / D``.

    With ``eps_inside_sqrt`` (the paper)::

        g_cur = (m / bias1) / sqrt(eps + v / bias2),  D = sqrt(v + eps * bias2),
        c = sqrt(bias2) / bias1

    Without (the formula of ``torch.optim.Adam``)::

        g_cur = (m / bias1) / (sqrt(v / bias2) + eps),  D = sqrt(v) + eps * sqrt(bias2)

    Args:
        out: buffers shaped like ``exp_avg_sqs`` (overwritten; no allocation).
        exp_avg_sqs: updated second moments ``v_p`` (not modified).
        scalars: one :class:`PAdamScalars` per tensor.
        eps: the epsilon of each tensor (absolute value, already scaled if relative).
        eps_inside_sqrt: where eps goes (see above).

    Returns:
        one scale ``c`` per tensor.
    """
    if not exp_avg_sqs:
        return []
    out = list(out)
    scales = [math.sqrt(s.bias2) / s.bias1 for s in scalars]
    if eps_inside_sqrt:
        for o, v, e, s in zip(out, exp_avg_sqs, eps, scalars):
            torch.add(v, e * s.bias2, out=o)
        torch._foreach_sqrt_(out)
    else:
        for o, v in zip(out, exp_avg_sqs):
            torch.sqrt(v, out=o)
        torch._foreach_add_(out, [e * math.sqrt(s.bias2) for e, s in zip(eps, scalars)])
    return scales


def p_adam_outputs_(denoms: Sequence[Tensor], exp_avgs: Sequence[Tensor], scales: Sequence[float]) -> None:
    """Turn the denominators ``D`` (in place) into the P-Adam outputs
    ``g_cur = c * m / D`` (see :func:`p_adam_denominators_`)."""
    if not denoms:
        return
    for d, m in zip(denoms, exp_avgs):
        torch.div(m, d, out=d)
    if any(c != 1.0 for c in scales):
        torch._foreach_mul_(list(denoms), list(scales))


def add_scaled_(outs: Sequence[Tensor], ins: Sequence[Tensor], scales: Sequence[float]) -> None:
    """``outs[i] += scales[i] * ins[i]`` in place (one foreach call when all scales are
    equal, which is the usual case); zero scales are skipped."""
    pairs = [(o, x, s) for o, x, s in zip(outs, ins, scales) if s != 0.0]
    if not pairs:
        return
    first = pairs[0][2]
    if all(s == first for _, _, s in pairs):
        torch._foreach_add_([o for o, _, _ in pairs], [x for _, x, _ in pairs], alpha=first)
    else:
        for o, x, s in pairs:
            o.add_(x, alpha=s)


def p_saga_apply_(
    outs: Sequence[Tensor],
    g_cur: Sequence[Tensor],
    g_hat_old: Sequence[Tensor | None],
    g_sums: Sequence[Tensor],
    *,
    avg_scales: Sequence[float],
    alpha: float | Sequence[float],
    g_cur_stored: Sequence[Tensor | None] | None = None,
) -> None:
    """One P-SAGA step: ``outs += alpha * (g_cur - g_hat_old + avg_scale * S)`` (``S``
    before the update), then ``S += g_cur - g_hat_old`` (``S`` = sum of the stored
    directions of the paths seen).  No allocation when every ``g_hat_old`` is given.

    Args:
        outs: tensors receiving the scaled SAGA direction (the parameters, with
            ``alpha = -lr``, or zeroed gradients with ``alpha = 1``).
        g_cur: the new direction of the drawn path (P-Adam output or raw gradient);
            not modified.
        g_hat_old: the stored direction of the drawn path, ``None`` if never seen
            (then it counts as zero).  **Used as scratch space**: afterwards it holds
            ``g_hat_old - g_cur``; the caller replaces the stored row by ``g_cur``.
        g_sums: running sums ``S`` (updated in place).
        avg_scales: ``1 / |G|`` (``G`` = paths seen before this step; 0 if empty).
        alpha: multiplier of the direction (one float, or one per tensor).
        g_cur_stored: when the stored copy of ``g_cur`` is rounded (e.g. bfloat16
            storage), that rounded value in the compute dtype, so that ``S`` stays
            the exact sum of what is stored; ``None`` entries mean "same as g_cur".
    """
    n = len(g_cur)
    if n == 0:
        return
    alphas = [float(alpha)] * n if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
    # outs += alpha * avg_scale * S_old
    add_scaled_(outs, g_sums, [a * s for a, s in zip(alphas, avg_scales)])
    old = [i for i in range(n) if g_hat_old[i] is not None]
    new = [i for i in range(n) if g_hat_old[i] is None]
    if old:
        neg = [g_hat_old[i] for i in old]  # becomes g_hat_old - g_cur = -diff
        torch._foreach_sub_(neg, [g_cur[i] for i in old])  # type: ignore[arg-type]
        add_scaled_([outs[i] for i in old], neg, [-alphas[i] for i in old])  # type: ignore[misc]
        torch._foreach_sub_([g_sums[i] for i in old], neg)  # type: ignore[arg-type]
    if new:
        add_scaled_([outs[i] for i in new], [g_cur[i] for i in new], [alphas[i] for i in new])
        torch._foreach_add_([g_sums[i] for i in new], [g_cur[i] for i in new])
    if g_cur_stored is not None:
        fix = [i for i in range(n) if g_cur_stored[i] is not None]
        if fix:
            # S += stored - g_cur: S then sums exactly the (rounded) stored rows.
            torch._foreach_add_(
                [g_sums[i] for i in fix],
                torch._foreach_sub([g_cur_stored[i] for i in fix], [g_cur[i] for i in fix]),  # type: ignore[misc]
            )
