"""P-Adam (path-wise Adam moments, then SGD) and P-Adam+SAGA (the paper's default)."""

from __future__ import annotations

from scrapl.optim.base import PathOptimizerBase

__all__ = ["PAdam", "PAdamSAGA"]


class PAdam(PathOptimizerBase):
    """P-Adam: one pair of Adam moments per path, then a plain SGD step.

    At step ``k`` with drawn path ``p`` (last drawn at ``tau_p``) and gradient ``g``::

        b1' = beta1 ** ((k - tau_p) / P),  b2' = beta2 ** ((k - tau_p) / P)
        m_p = b1' m_p + (1 - b1') g,       v_p = b2' v_p + (1 - b2') g * g
        g_cur = (m_p / (1 - beta1 ** (k / P))) / sqrt(eps_eff + v_p / (1 - beta2 ** (k / P)))
        w <- w - lr * (g_cur + weight_decay * w)

    ``eps_eff = eps`` (``eps_mode="absolute"``, the paper) or ``eps * s**2`` with
    ``s`` the RMS of the parameter's first non-zero gradient (``"relative"``,
    default: the trajectory does not depend on the loss scale).

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
        n_paths: number of paths ``P``.
        path_source: callable returning the path that produced the current gradient
            (``None`` if unknown); used when ``step`` gets no ``path``.
        lr: SGD learning rate (>= 0).
        betas: ``(beta1, beta2)`` in ``[0, 1)``.
        eps: epsilon (> 0) inside the square root.
        eps_mode: ``"relative"`` or ``"absolute"``.
        weight_decay: L2 weight decay of the SGD step (>= 0).
        state_dtype: dtype of the per-path moments: ``"float32"``, ``"bfloat16"`` or
            ``"float64"``.
        state_device: device of the per-path moments (``None``: the parameter's).

    Example:
        >>> import torch
        >>> from scrapl.optim import PAdam
        >>> w = torch.nn.Parameter(torch.zeros(3))
        >>> opt = PAdam([w], n_paths=4, lr=0.1)
        >>> (w - torch.tensor([1.0, 2.0, 3.0])).square().sum().backward()
        >>> opt.step(path=2)
        >>> w.detach()  # the first step of a path moves each weight by lr
        tensor([0.1000, 0.1000, 0.1000])
    """

    use_p_adam = True
    use_p_saga = False
    display_name = "P-Adam"


class PAdamSAGA(PAdam):
    """P-Adam followed by P-SAGA, then a plain SGD step (the paper's default).

    ``g_cur`` is the P-Adam output (see :class:`PAdam`); with ``G`` the paths seen
    before this step and ``g_hat_q`` the last ``g_cur`` of path ``q``::

        d = g_cur - g_hat_p + sum_{q in G} g_hat_q / max(1, |G|)
        w <- w - lr * (d + weight_decay * w);   g_hat_p = g_cur

    The sum is a running sum (O(weights) per step).  Arguments as :class:`PAdam`.

    Example:
        >>> import torch
        >>> from scrapl.optim import PAdamSAGA
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> opt = PAdamSAGA([w], n_paths=315, lr=1e-2)
        >>> for path in (3, 7, 3):
        ...     opt.zero_grad()
        ...     (w - 1.0).square().sum().backward()
        ...     opt.step(path=path)
        >>> opt.paths_seen()
        2
    """

    use_p_adam = True
    use_p_saga = True
    display_name = "P-Adam+SAGA"
