"""Gradient hooks reproducing the reference package's ``SCRAPLLoss.attach_params``.

The reference (``scrapl-loss`` 0.1.0) multiplies every gradient by ``grad_mult`` and
replaces it by the P-Adam / P-SAGA direction inside a gradient hook; the user then
steps a plain ``torch.optim.SGD``.  :class:`PathGradHooks` keeps that drop-in API
for existing code, with the same update kernels as the optimizer plugins
(:mod:`scrapl.optim.functional`), applied after gradient accumulation
(``Tensor.register_post_accumulate_grad_hook``) and modifying ``p.grad`` in place.

Limits (prefer the optimizer plugins :class:`~scrapl.optim.PAdamSAGA` etc., which
act in ``optimizer.step`` and have none of them):

* every ``backward`` that reaches a parameter triggers an update of the per-path
  state, so gradient accumulation over several ``backward`` calls is NOT supported
  (each micro-batch is treated as a step, and what accumulates in ``p.grad`` is the
  sum of transformed gradients); call ``zero_grad`` before every backward;
* the path and step are read when the hook runs, so two forwards of the loss
  before one backward, or a second loss term, use the last forward's path;
* a gradient scaler (``torch.amp.GradScaler``) scales the gradient seen by the hook
  (P-Adam itself is scale invariant, but P-SAGA mixes gradients of different
  scales, and ``unscale_`` then divides the direction); inf/NaN gradients enter the
  state before the scaler can skip the step;
* under DistributedDataParallel the hook may run before the gradient is
  all-reduced, so ranks see different gradients;
* the state can be checkpointed with :meth:`PathGradHooks.state_dict` (the
  reference cannot), but it is not part of the optimizer's state.

Differences from the reference, by default: P-SAGA divides the sum of stored
directions by ``|G|`` (paths seen before this step) as in the paper, where the
reference divides by ``(paths seen including p) - 1`` also when ``p`` was seen
before (use ``saga_divisor="reference"`` to reproduce it).  P-Adam puts ``eps``
outside the square root as the reference does (``eps_placement="outside"``);
``"inside"`` is the paper's formula.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Literal, Mapping, Optional

import torch
from torch import Tensor

from scrapl.optim import functional as F
from scrapl import checks
from scrapl.optim.base import RowStore, check_path_args, compute_dtype, tensor_bytes
from scrapl.optim.config import STATE_DTYPES, check_state_device

__all__ = ["PathGradHooks"]


class PathGradHooks:
    """P-Adam / P-SAGA applied to ``p.grad`` by post-accumulate-grad hooks.

    When a parameter's gradient has been accumulated by a ``backward`` in training
    mode, the hook

    1. multiplies ``p.grad`` by ``grad_mult``;
    2. reads the path ``p = path_getter()`` and the global step ``k = step_getter()``;
    3. replaces ``p.grad`` by the P-Adam output (if ``use_p_adam``) and then by the
       P-SAGA direction (if ``use_p_saga``).

    Args:
        params: the parameters to hook (leaf tensors requiring grad; duplicates are
            ignored).
        n_paths: number of paths ``P``.
        path_getter: returns the path of the current gradient (``None`` -> error).
        step_getter: returns the global step ``k`` (int >= 1) used in the P-Adam
            exponents.  The reference uses ``(training forwards so far) + 1``: its
            forward increments a counter ``t`` and its hook uses ``t + 1``.
        is_training: returns ``False`` to leave gradients untouched (the reference
            does nothing in eval mode).
        grad_mult: gradient multiplier (> 0) applied first, as in the reference.
        use_p_adam: apply P-Adam.
        use_p_saga: apply P-SAGA.
        betas: P-Adam ``(beta1, beta2)`` in ``[0, 1)``.
        eps: P-Adam epsilon (> 0).
        eps_placement: ``"outside"`` (reference: ``m_hat / (sqrt(v_hat) + eps)``) or
            ``"inside"`` (paper: ``m_hat / sqrt(eps + v_hat)``).
        saga_divisor: ``"paper"`` (``|G|``) or ``"reference"`` (see module docs).
        state_dtype: ``"float32"``, ``"bfloat16"`` or ``"float64"`` per-path rows.
        state_device: device of the per-path rows (``None``: the parameter's).

    Example:
        >>> import torch
        >>> from scrapl.compat.hooks import PathGradHooks
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> t = {"path": 0, "k": 1}
        >>> hooks = PathGradHooks([w], 4, lambda: t["path"], lambda: t["k"], lambda: True,
        ...                       grad_mult=1.0)
        >>> (w * torch.tensor([1e-3, -2e-3, 0.0])).sum().backward()
        >>> w.grad  # P-Adam's first output is ~sign(g); P-SAGA adds nothing at first
        tensor([ 1.0000, -1.0000,  0.0000])
        >>> hooks.remove()
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        n_paths: int,
        path_getter: Callable[[], Optional[int]],
        step_getter: Callable[[], int],
        is_training: Callable[[], bool],
        grad_mult: float = 1e8,
        use_p_adam: bool = True,
        use_p_saga: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        eps_placement: Literal["outside", "inside"] = "outside",
        saga_divisor: Literal["paper", "reference"] = "paper",
        state_dtype: str = "float32",
        state_device: Optional[str] = None,
    ) -> None:
        check_path_args(n_paths, None)
        for name, fn in (("path_getter", path_getter), ("step_getter", step_getter), ("is_training", is_training)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        if not (isinstance(grad_mult, (int, float)) and grad_mult > 0 and math.isfinite(grad_mult)):
            raise ValueError(f"grad_mult must be a finite float > 0, got {grad_mult!r}")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas)):
            raise ValueError(f"betas must be a pair of floats in [0, 1), got {betas!r}")
        if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a finite float > 0, got {eps!r}")
        if eps_placement not in ("outside", "inside"):
            raise ValueError(f"eps_placement must be 'outside' or 'inside', got {eps_placement!r}")
        if saga_divisor not in ("paper", "reference"):
            raise ValueError(f"saga_divisor must be 'paper' or 'reference', got {saga_divisor!r}")
        if state_dtype not in STATE_DTYPES:
            raise ValueError(f"state_dtype must be one of {sorted(STATE_DTYPES)}, got {state_dtype!r}")
        check_state_device(state_device)
        self.n_paths = n_paths
        self.path_getter = path_getter
        self.step_getter = step_getter
        self.is_training = is_training
        self.grad_mult = float(grad_mult)
        self.use_p_adam = bool(use_p_adam)
        self.use_p_saga = bool(use_p_saga)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.eps_placement = eps_placement
        self.saga_divisor = saga_divisor
        self.state_dtype = state_dtype
        self.state_device = state_device
        self._store = RowStore(STATE_DTYPES[state_dtype], None if state_device is None else torch.device(state_device))
        self.params: list[Tensor] = []
        seen: set[int] = set()
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"params must be tensors, got {type(p).__name__}")
            if not p.requires_grad or p.grad_fn is not None:
                raise ValueError("params must be leaf tensors with requires_grad=True")
            if id(p) not in seen:
                seen.add(id(p))
                self.params.append(p)
        self.state: list[dict[str, Any]] = [self._new_state() for _ in self.params]
        self._handles = [p.register_post_accumulate_grad_hook(self._make_hook(i)) for i, p in enumerate(self.params)]

    def _new_state(self) -> dict[str, Any]:
        st: dict[str, Any] = {}
        if self.use_p_adam:
            st.update(m={}, v={}, tau={})
        if self.use_p_saga:
            st.update(g_hat={})
        return st

    def _make_hook(self, idx: int) -> Callable[[Tensor], None]:
        def hook(param: Tensor) -> None:
            self._on_grad(idx, param)

        return hook

    @torch.no_grad()
    def _on_grad(self, idx: int, param: Tensor) -> None:
        if not self.is_training() or param.grad is None:
            return
        grad_t = param.grad
        if grad_t.is_sparse:
            raise TypeError("PathGradHooks does not support sparse gradients")
        grad_view = torch.view_as_real(grad_t) if grad_t.is_complex() else grad_t
        if self.grad_mult != 1.0:
            grad_view.mul_(self.grad_mult)
        path = self.path_getter()
        if path is None:
            raise ValueError(
                "PathGradHooks: no current path (path_getter() returned None); run the SCRAPL loss "
                "forward in training mode before backward"
            )
        path = checks.path_index(path, self.n_paths, "path_getter()")
        k = self.step_getter()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"step_getter() must return an int >= 1, got {k!r}")
        st = self.state[idx]
        store = self._store
        cdt = compute_dtype(grad_view.dtype)
        g = grad_view.to(cdt)
        if self.use_p_adam:
            tau = st["tau"].get(path, 0)
            if tau > k:
                raise ValueError(f"step_getter() went backwards (k={k} < last step {tau} of path {path}); call reset()")
            sc = F.p_adam_scalars(k, tau, self.n_paths, *self.betas)
            m = store.fetch(st["m"], path, g)
            v = store.fetch(st["v"], path, g)
            m = torch.zeros_like(g) if m is None else m
            v = torch.zeros_like(g) if v is None else v
            F.p_adam_moments_([g], [m], [v], [sc])
            store.put(st["m"], path, m, owned=True)
            store.put(st["v"], path, v, owned=True)
            st["tau"][path] = k
            g_cur = torch.empty_like(g)
            scales = F.p_adam_denominators_(
                [g_cur], [v], [sc], [self.eps], eps_inside_sqrt=self.eps_placement == "inside"
            )
            F.p_adam_outputs_([g_cur], [m], scales)
        else:
            g_cur = g.clone() if g is grad_view else g
        if self.use_p_saga:
            old = store.fetch(st["g_hat"], path, g_cur)
            n_seen = len(st["g_hat"])
            if self.saga_divisor == "paper":
                divisor = max(1, n_seen)
            else:
                divisor = max(1, n_seen + (0 if path in st["g_hat"] else 1) - 1)
            gs = st.get("g_sum")
            if gs is None:
                gs = st["g_sum"] = torch.zeros_like(g_cur)
            stored = g_cur.to(store.dtype).to(g_cur.dtype) if store.lossy(g_cur) else None
            out = torch.zeros_like(g_cur)
            # (old is used as scratch by the kernel; the row is replaced just below)
            F.p_saga_apply_(
                [out], [g_cur], [old], [gs], avg_scales=[1.0 / divisor if n_seen else 0.0], alpha=1.0,
                g_cur_stored=[stored],
            )
            store.put(st["g_hat"], path, g_cur, owned=True)
            g_cur = out
        grad_view.copy_(g_cur)

    # ----------------------------------------------------------------- management
    def remove(self) -> None:
        """Remove the hooks (the state is kept until :meth:`reset`)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def reset(self) -> None:
        """Forget the per-path state (hooks stay attached)."""
        self.state = [self._new_state() for _ in self.params]

    def state_bytes(self) -> int:
        """Bytes held by the per-path state now."""
        return sum(tensor_bytes(st) for st in self.state)

    def state_dict(self) -> dict[str, Any]:
        """The per-path state (tensors, ints and dicts only; ``torch.load(weights_only=True)``
        compatible).  Tensors are not copied."""
        return {"n_paths": self.n_paths, "state": [dict(st) for st in self.state]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output for the same parameter list."""
        if state_dict.get("n_paths") != self.n_paths:
            raise ValueError(f"state_dict has n_paths={state_dict.get('n_paths')!r}, hooks have {self.n_paths}")
        states = state_dict["state"]
        if len(states) != len(self.params):
            raise ValueError(f"state_dict holds {len(states)} parameters, hooks have {len(self.params)}")
        new = []
        for p, st in zip(self.params, states):
            cdt = compute_dtype(p.real.dtype if p.is_complex() else p.dtype)
            out = self._new_state()
            for k, v in st.items():
                if k in ("m", "v", "g_hat"):
                    out[k] = {int(i): self._store.cast(row, p.device) for i, row in v.items()}
                elif k == "tau":
                    out[k] = {int(i): int(t) for i, t in v.items()}
                elif k == "g_sum":
                    out[k] = v.to(device=p.device, dtype=cdt)
                else:
                    out[k] = v
            new.append(out)
        self.state = new

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.params)
        parts = [x for x, on in (("P-Adam", self.use_p_adam), ("P-SAGA", self.use_p_saga)) if on]
        return (
            f"PathGradHooks({'+'.join(parts) or 'grad_mult only'}, P={self.n_paths}, params={len(self.params)}, "
            f"weights={n:,}, grad_mult={self.grad_mult:g}, state bytes now={self.state_bytes():,}, "
            f"attached={bool(self._handles)})"
        )
