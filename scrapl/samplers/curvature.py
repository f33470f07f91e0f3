"""Curvature of the SCRAPL loss landscape for theta-importance sampling (theta-IS).

For an encoder ``E`` (weights ``w``, output ``theta = E(x)`` of shape ``(B, U)``), a
synthesizer ``D`` and the distance ``d_p`` of one scattering path ``p``, theta-IS
measures, for every synth parameter ``u``, the largest-magnitude eigenvalue of the
linear operator

    A_{u,p} = d/dw [ g_{u,p}(w) ],   g_{u,p}(w) = sum_b s_{b,u}(w) * grad_w E_{b,u}(w),
    s(w) = d L_p / d theta  at theta = E(w),  L_p = d_p(x, D(theta))

i.e. ``grad_w (s_{x,u,p}(w) * grad_w E_{x,u}(w))`` of the paper, summed over the
warmup batches (the operators of the batches are added, not averaged, before the
eigenvalue is taken, so ``vals_{p}.pt`` files are interchangeable with scrapl-loss
0.1.0's; docs/compat.md).  It is applied through
vector-Jacobian products ("Hessian-vector products") ``v -> A^T v``; ``A`` and
``A^T`` have the same eigenvalues.

How we make this cheap
----------------------
Evaluated directly, every power-iteration step back-propagates through the
scattering transform twice for every ``u`` (``20 * U`` double backward passes per
path, and per batch).  But ``A_{u,p}`` depends on the loss only through ``s`` and the
Hessian ``H = d^2 L_p / d theta^2`` (a ``BU x BU`` matrix) at the current ``theta``:

    A_{u,p} = J_u^T [H J]_u + sum_b s_{b,u} * Hess_w E_{b,u},   J = d theta / d w.

So per path and batch we compute ``s`` and ``H`` once (one batched double backward
through the synth and the transform), then run every power iteration on the
*quadratic model* ``s~(w) = s + H (E(w) - theta)`` whose first derivatives at ``w``
are exactly those of ``s(w)``: only the encoder is differentiated in the loop, for
all ``U`` parameters at once (``torch.autograd.grad(..., is_grads_batched=True)``).

``H`` itself: when every example's distance depends on its own ``theta_b`` only (a
per-example synth, the scattering distance averaged over the batch), ``H`` is block
diagonal and ``U`` batched Hessian-vector products give every block.
``loss_hessian="auto"`` checks that with one extra product against a random vector
(once per batch) and falls back to the ``B * U`` products of the full Hessian when
the check fails.

Eigenvalues: ``method="power"`` is a power iteration (Rayleigh quotient,
``n_iter`` steps, early stop at relative change ``tol``); ``method="arnoldi"`` spends the
same number of products on a Krylov basis and takes the largest-magnitude Ritz value,
which also converges when the top eigenvalues are close or ``+-lambda`` (common for
this non-symmetric operator, where power iteration returns noise).

Everything random (start vectors, the block-structure check vector) comes from an
explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

import torch
from torch import Tensor

__all__ = [
    "DistFn",
    "LossHessianMode",
    "EigenMethod",
    "CurvatureEstimator",
    "largest_eigenvalues",
    "path_curvatures",
    "check_is_deterministic",
]

DistFn = Callable[[Tensor, Tensor, int], Tensor]
"""``dist_fn(x, x_hat, path_idx) -> scalar Tensor``: the distance of one path between
the input signals ``x`` (``theta_fn_kwargs[i]["x"]``) and the synthesized ``x_hat``."""

LossHessianMode = Literal["auto", "block", "full"]
EigenMethod = Literal["power", "arnoldi"]

_BLOCK_CHECK_RTOL = 1e-3


def _default_generator(generator: Optional[torch.Generator]) -> torch.Generator:
    if generator is None:
        return torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def largest_eigenvalues(
    matvec: Callable[[Tensor, Tensor], Tensor],
    size: int,
    n_ops: int,
    *,
    n_iter: int = 20,
    tol: Optional[float] = 1e-4,
    generator: Optional[torch.Generator] = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    init: Optional[Tensor] = None,
    method: EigenMethod = "power",
) -> Tensor:
    """Largest-magnitude eigenvalues of ``n_ops`` linear operators, iterated together.

    Args:
        matvec: ``matvec(vectors, which) -> products``: ``vectors`` has shape
            ``(k, size)``, ``which`` (``(k,)``, int64, CPU) says which operator each
            row is for; returns the ``(k, size)`` products ``A_which[i] @ vectors[i]``.
        size: dimension ``N`` of each operator.
        n_ops: number of operators ``U`` iterated together.
        n_iter: maximum number of operator applications per operator (>= 1).
        tol: stop iterating an operator once the relative change of its eigenvalue
            estimate falls below ``tol`` (default 1e-4); ``None`` always runs
            ``n_iter`` steps.
        generator: CPU generator of the start vectors (uniform in [0, 1));
            ``None`` uses a fresh generator seeded with 0.
        dtype, device: of the vectors passed to ``matvec``.
        init: optional ``(n_ops, size)`` start vectors (then ``generator`` is unused).
        method: ``"power"`` (default): power iteration, the estimate is the Rayleigh
            quotient ``v^T A v`` of the last unit iterate.
            ``"arnoldi"``: the largest-magnitude Ritz value of the Krylov space spanned
            by the same number of products.  Same cost, but it also finds the
            dominant eigenvalue when the top two are close or of opposite signs
            (``+-lambda``), where power iteration does not converge; it keeps the
            ``n_iter`` Krylov vectors (``n_ops * (n_iter + 1) * size`` numbers).

    Returns:
        ``(n_ops,)`` float64 tensor (CPU) of signed eigenvalue estimates (0 for a zero
        operator; for a complex dominant Ritz pair, its modulus signed by its real part).
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if not isinstance(n_ops, int) or n_ops < 1:
        raise ValueError(f"n_ops must be a positive int, got {n_ops!r}")
    _check_iteration(n_iter, tol, method)
    if init is None:
        init = torch.rand(n_ops, size, generator=_default_generator(generator), dtype=torch.float64)
    elif not isinstance(init, Tensor) or tuple(init.shape) != (n_ops, size):
        raise ValueError(f"init must be a tensor of shape ({n_ops}, {size})")
    vec = init.to(dtype=dtype, device=device)
    vec = vec / vec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)

    def apply(v: Tensor, which: Tensor) -> Tensor:
        w = matvec(v, which)
        if w.shape != v.shape:
            raise ValueError(f"matvec returned shape {tuple(w.shape)}, expected {tuple(v.shape)}")
        return w.detach()

    if method == "arnoldi":
        return _arnoldi(apply, vec, n_iter, tol)
    lam = torch.zeros(n_ops, dtype=torch.float64)
    prev = torch.zeros(n_ops, dtype=torch.float64)
    active = torch.arange(n_ops)
    for _ in range(n_iter):
        v = vec[active.to(vec.device)]
        w = apply(v, active)
        est = (v * w).sum(dim=1).double().cpu()
        nrm = w.norm(dim=1)
        null = (nrm == 0).cpu()
        est = torch.where(null, torch.zeros_like(est), est)
        lam[active] = est
        safe = torch.where(nrm == 0, torch.ones_like(nrm), nrm)
        vec[active.to(vec.device)] = torch.where((nrm == 0).unsqueeze(1), v, w / safe.unsqueeze(1))
        done = null.clone()
        if tol is not None:
            err = torch.where(est == 0, torch.ones_like(est), (est - prev[active]).abs() / est.abs())
            done |= err < tol
        prev[active] = est
        active = active[~done]
        if active.numel() == 0:
            break
    return lam


def _top_ritz(h: Tensor) -> float:
    """Largest-magnitude eigenvalue of a small square (upper Hessenberg) matrix, real
    (the modulus signed by the real part for a complex pair)."""
    ev = torch.linalg.eigvals(h)
    top = ev[int(ev.abs().argmax())]
    mod = float(top.abs())
    if abs(float(top.imag)) <= 1e-8 * mod:
        return float(top.real)
    return math.copysign(mod, float(top.real))


def _arnoldi(apply: Callable[[Tensor, Tensor], Tensor], vec: Tensor, n_iter: int, tol: Optional[float]) -> Tensor:
    """Batched Arnoldi (modified Gram-Schmidt, applied twice) from unit start vectors
    ``vec`` (``(U, N)``); returns the top Ritz value of each operator."""
    U, N = vec.shape
    dev = vec.device
    V = torch.zeros(U, n_iter + 1, N, dtype=vec.dtype, device=dev)
    V[:, 0] = vec
    H = torch.zeros(U, n_iter + 1, n_iter, dtype=torch.float64)
    dim = torch.full((U,), n_iter, dtype=torch.int64)  # Krylov dimension reached
    prev = torch.zeros(U, dtype=torch.float64)
    lam = torch.zeros(U, dtype=torch.float64)
    active = torch.arange(U)
    for j in range(n_iter):
        a_dev = active.to(dev)
        basis = V[a_dev, : j + 1]  # (k, j+1, N)
        w = apply(V[a_dev, j], active)
        for _ in range(2):  # re-orthogonalise once for stability
            h = torch.einsum("kin,kn->ki", basis, w)
            w = w - torch.einsum("ki,kin->kn", h, basis)
            H[active, : j + 1, j] += h.double().cpu()
        beta = w.norm(dim=1).double().cpu()
        H[active, j + 1, j] = beta
        scale = H[active, : j + 2, j].norm(dim=1)
        # invariant subspace found: what is left of w is rounding noise
        breakdown = beta <= 64 * torch.finfo(vec.dtype).eps * scale.clamp_min(torch.finfo(torch.float64).tiny)
        ok = ~breakdown
        V[a_dev[ok.to(dev)], j + 1] = w[ok.to(dev)] / beta[ok].to(w.dtype).to(dev).unsqueeze(1)
        done = breakdown.clone()
        for i, u in enumerate(active.tolist()):
            lam[u] = _top_ritz(H[u, : j + 1, : j + 1])
            if breakdown[i]:
                dim[u] = j + 1
            elif tol is not None and j > 0:
                ref = abs(float(lam[u]))
                done[i] = ref > 0 and abs(float(lam[u] - prev[u])) / ref < tol
            prev[u] = lam[u]
        active = active[~done]
        if active.numel() == 0:
            break
    return lam


def check_is_deterministic(
    theta_fn: Callable[..., Tensor],
    theta_fn_kwargs: Mapping[str, Any],
    synth_fn: Callable[..., Tensor],
    synth_fn_kwargs: Optional[Mapping[str, Any]] = None,
    *,
    warn: bool = True,
) -> bool:
    """Run encoder and synth twice on one batch and compare (``torch.allclose``).

    Returns ``True`` when both are deterministic; otherwise ``False`` and, if
    ``warn``, a ``RuntimeWarning`` saying which one is not (only a warning: the
    warmup still runs).
    """
    skw = dict(synth_fn_kwargs or {})
    with torch.no_grad():
        t1 = theta_fn(**theta_fn_kwargs)
        t2 = theta_fn(**theta_fn_kwargs)
        if not torch.allclose(t1, t2):
            if warn:
                warnings.warn("theta_fn is not deterministic: two calls on the same batch differ", RuntimeWarning, stacklevel=2)
            return False
        x1 = synth_fn(t1, **skw)
        x2 = synth_fn(t1, **skw)
        if not torch.allclose(x1, x2):
            if warn:
                warnings.warn("synth_fn is not deterministic: two calls on the same theta differ", RuntimeWarning, stacklevel=2)
            return False
    return True


def _flat(grads: Sequence[Tensor], lead: int | None) -> Tensor:
    if lead is None:
        return torch.cat([g.reshape(-1) for g in grads])
    return torch.cat([g.reshape(lead, -1) for g in grads], dim=1)


class _Batch:
    """Per-batch tensors shared by every path: encoder output with its graph, the
    detached ``theta`` leaf and the synth output built on it (graph retained)."""

    def __init__(self, x: Tensor, theta: Tensor, theta_leaf: Tensor, x_hat: Tensor) -> None:
        self.x = x
        self.theta = theta
        self.theta_leaf = theta_leaf
        self.x_hat = x_hat
        self.block_structure: Optional[bool] = None  # loss Hessian block diagonal? (None: not checked yet)


class _PathBatch:
    """Path-specific loss derivatives of one batch: gradient ``s`` (B, U) and the
    Hessian in ``theta``, either as diagonal blocks ``(B, U, U)`` or full ``(BU, BU)``."""

    def __init__(self, s: Tensor, blocks: Optional[Tensor], full: Optional[Tensor]) -> None:
        self.s = s
        self.blocks = blocks
        self.full = full

    def apply(self, y: Tensor) -> Tensor:
        """``H y`` for ``y`` of shape ``(B, U)``."""
        if self.blocks is not None:
            return torch.einsum("bvu,bu->bv", self.blocks, y)
        assert self.full is not None  # internal invariant
        return (self.full @ y.reshape(-1)).view_as(y)


def _check_iteration(n_iter: Any, tol: Any, method: Any) -> None:
    if not isinstance(n_iter, int) or isinstance(n_iter, bool) or n_iter < 1:
        raise ValueError(f"n_iter must be an int >= 1, got {n_iter!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a non-negative float or None, got {tol!r}")
    if method not in ("power", "arnoldi"):
        raise ValueError(f"method must be 'power' or 'arnoldi', got {method!r}")


def check_estimator_options(n_iter: Any, tol: Any, method: Any, loss_hessian: Any) -> None:
    """The options of :class:`CurvatureEstimator` (also checked by ``run_warmup``
    before it touches its folder).

    Raises:
        ValueError naming the option and the values allowed.
    """
    _check_iteration(n_iter, tol, method)
    if loss_hessian not in ("auto", "block", "full"):
        raise ValueError(f"loss_hessian must be 'auto', 'block' or 'full', got {loss_hessian!r}")


class CurvatureEstimator:
    """theta-IS curvatures ``C_{u,p}`` for the paths of one encoder/synth setup.

    The encoder and synth forwards of every batch are computed once and shared by
    all paths (their graphs are kept until :meth:`release`), so estimate all paths of
    a warmup with one estimator.

    Args:
        theta_fn: encoder, ``theta_fn(**theta_fn_kwargs[i]) -> theta`` of shape
            ``(B, U)``; must be deterministic (it is evaluated once per batch).
        synth_fn: synthesizer, ``synth_fn(theta, **synth_fn_kwargs[i]) -> x_hat``.
        theta_fn_kwargs: one dict of keyword arguments per batch; each must hold the
            input signal under ``"x"`` (passed to the distance).
        params: encoder weights ``w`` (tensors requiring grad, same dtype and
            device).  The loss may depend on them only through ``theta``.
        synth_fn_kwargs: optional list (same length) of extra synth arguments.
        n_theta: expected ``U`` (checked against ``theta_fn``'s output); ``None``
            takes it from the output.
        n_iter: power-iteration steps (>= 1, default 20).
        tol: early-stopping relative tolerance of the power iteration (default 1e-4)
            or ``None``.
        loss_hessian: ``"block"`` assumes each example's loss depends on its own
            ``theta_b`` only (``U`` Hessian-vector products per batch and path),
            ``"full"`` computes all ``B*U`` of them, ``"auto"`` (default) checks the
            block structure with one extra random product on the first path of each
            batch (until a check is conclusive, i.e. the Hessian is not zero) and
            then uses ``"block"`` or ``"full"`` for that batch.  The coupling between
            examples comes from the synth (shared by all paths) or the distance's
            batch reduction (the same for all paths), hence one check per batch.
        vectorize: batch the ``U`` (and Hessian) products with
            ``is_grads_batched=True`` (default) instead of a Python loop; results are
            equal up to rounding.  The products through the distance fall back to
            a loop silently when the transform has no batching rule (the JTFS's
            fused kernels; :attr:`hvp_loop_reason`), the encoder's stay batched; a
            vmap error in the encoder's products warns and continues with the loop.
        method: eigenvalue algorithm, ``"power"`` (default) or ``"arnoldi"``
            (same number of products, robust to close or opposite-sign top
            eigenvalues); see :func:`largest_eigenvalues`.
    """

    def __init__(
        self,
        theta_fn: Callable[..., Tensor],
        synth_fn: Callable[..., Tensor],
        theta_fn_kwargs: Sequence[Mapping[str, Any]],
        params: Sequence[Tensor],
        synth_fn_kwargs: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
        *,
        n_theta: Optional[int] = None,
        n_iter: int = 20,
        tol: Optional[float] = 1e-4,
        loss_hessian: LossHessianMode = "auto",
        vectorize: bool = True,
        method: EigenMethod = "power",
    ) -> None:
        if not callable(theta_fn):
            raise TypeError("theta_fn must be callable")
        if not callable(synth_fn):
            raise TypeError("synth_fn must be callable")
        if isinstance(theta_fn_kwargs, Mapping):
            theta_fn_kwargs = [theta_fn_kwargs]
        if not isinstance(theta_fn_kwargs, Sequence) or len(theta_fn_kwargs) == 0:
            raise ValueError("theta_fn_kwargs must be a non-empty list of dicts (one per batch)")
        for i, kw in enumerate(theta_fn_kwargs):
            if not isinstance(kw, Mapping):
                raise TypeError(f"theta_fn_kwargs[{i}] must be a dict, got {type(kw).__name__}")
            if "x" not in kw:
                raise ValueError(f"theta_fn_kwargs[{i}] must contain the input signal under the key 'x'")
        if synth_fn_kwargs is not None:
            if isinstance(synth_fn_kwargs, Mapping):
                synth_fn_kwargs = [synth_fn_kwargs]
            if len(synth_fn_kwargs) != len(theta_fn_kwargs):
                raise ValueError(
                    f"synth_fn_kwargs must have the same length as theta_fn_kwargs "
                    f"({len(theta_fn_kwargs)}), got {len(synth_fn_kwargs)}"
                )
        params = list(params) if params is not None else []
        if not params:
            raise ValueError("params must be a non-empty list of encoder tensors requiring grad")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"params[{i}] does not require grad")
            if p.dtype != params[0].dtype or p.device != params[0].device:
                raise ValueError("params must all have the same dtype and device")
            if not p.is_floating_point():
                raise TypeError(f"params[{i}] must be floating point, got {p.dtype}")
        if n_theta is not None and (not isinstance(n_theta, int) or isinstance(n_theta, bool) or n_theta < 1):
            raise ValueError(f"n_theta must be an int >= 1 or None, got {n_theta!r}")
        check_estimator_options(n_iter, tol, method, loss_hessian)
        self.theta_fn = theta_fn
        self.synth_fn = synth_fn
        self.theta_fn_kwargs = list(theta_fn_kwargs)
        self.synth_fn_kwargs = [dict(k or {}) for k in synth_fn_kwargs] if synth_fn_kwargs is not None else [{} for _ in theta_fn_kwargs]
        self.params = params
        self.n_theta = n_theta
        self.n_iter = n_iter
        self.tol = tol
        self.loss_hessian: LossHessianMode = loss_hessian
        self.vectorize = bool(vectorize)
        self.method: EigenMethod = method
        self._batches: Optional[list[_Batch]] = None
        self.n_hessian_fallbacks = 0
        """How many batches failed the block-structure check (``"auto"`` mode)."""
        self.hvp_loop_reason: Optional[str] = None
        """Why the Hessian-vector products through the distance run in a loop
        (``None``: batched, or not tried yet; see :meth:`_hvps`)."""

    # -- shared per-batch forwards ---------------------------------------------------
    def _prepare(self) -> list[_Batch]:
        if self._batches is not None:
            return self._batches
        batches = []
        for i, (tkw, skw) in enumerate(zip(self.theta_fn_kwargs, self.synth_fn_kwargs)):
            theta = self.theta_fn(**tkw)
            if not isinstance(theta, Tensor) or theta.ndim != 2:
                raise ValueError(
                    f"theta_fn must return a (batch, n_theta) tensor, got "
                    f"{tuple(theta.shape) if isinstance(theta, Tensor) else type(theta).__name__} for batch {i}"
                )
            if self.n_theta is None:
                self.n_theta = theta.size(1)
            elif theta.size(1) != self.n_theta:
                raise ValueError(f"theta_fn returned {theta.size(1)} parameters for batch {i}, expected n_theta={self.n_theta}")
            if not theta.requires_grad:
                raise ValueError("theta_fn's output does not depend on params (it does not require grad)")
            leaf = theta.detach().requires_grad_(True)
            x_hat = self.synth_fn(leaf, **skw)
            batches.append(_Batch(tkw["x"], theta, leaf, x_hat))
        self._batches = batches
        return batches

    def release(self) -> None:
        """Drop the cached forwards and their graphs."""
        self._batches = None

    # -- per path ------------------------------------------------------------------
    def _loss_derivatives(self, dist_fn: DistFn, path_idx: int, batch: _Batch, gen: torch.Generator) -> _PathBatch:
        leaf = batch.theta_leaf
        B, U = leaf.shape
        loss = dist_fn(batch.x, batch.x_hat, path_idx)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            raise ValueError(
                f"dist_fn must return a scalar tensor, got "
                f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__} for path {path_idx}"
            )
        if not loss.requires_grad:
            s = torch.zeros_like(leaf)
            return _PathBatch(s, torch.zeros(B, U, U, dtype=leaf.dtype, device=leaf.device), None)
        grads = torch.autograd.grad(loss, [leaf, *self.params], create_graph=True, retain_graph=True, allow_unused=True)
        if any(g is not None for g in grads[1:]):
            raise ValueError(
                "the distance depends on params other than through theta_fn's output "
                "(synth_fn or dist_fn uses the encoder weights); pass only encoder weights as params"
            )
        s = grads[0] if grads[0] is not None else torch.zeros_like(leaf)
        if not s.requires_grad:  # loss linear in theta
            return _PathBatch(s.detach(), torch.zeros(B, U, U, dtype=leaf.dtype, device=leaf.device), None)
        eye_u = torch.eye(U, dtype=leaf.dtype, device=leaf.device)
        mode = self.loss_hessian
        if B == 1:
            mode = "block"
        elif mode == "auto" and batch.block_structure is not None:
            mode = "block" if batch.block_structure else "full"
        if mode in ("auto", "block"):
            rows = [eye_u.unsqueeze(1).expand(U, B, U)]
            if mode == "auto":
                r = torch.randn(1, B, U, generator=gen, dtype=torch.float64).to(leaf)
                rows.append(r)
            hv = self._hvps(s, leaf, torch.cat(rows, 0))  # (U[+1], B, U)
            blocks = hv[:U].permute(1, 2, 0).contiguous()  # blocks[b, v, u] = H[(b,v),(b,u)]
            path_batch = _PathBatch(s.detach(), blocks.detach(), None)
            if mode == "block":
                return path_batch
            hr = hv[U]
            pred = path_batch.apply(rows[1][0])
            scale = float(hr.norm() + pred.norm())
            if float((hr - pred).norm()) <= _BLOCK_CHECK_RTOL * scale:
                if scale > 0:  # conclusive: trust the block structure for the other paths
                    batch.block_structure = True
                return path_batch
            batch.block_structure = False
            self.n_hessian_fallbacks += 1
        full_rows = torch.eye(B * U, dtype=leaf.dtype, device=leaf.device).view(B * U, B, U)
        hv = self._hvps(s, leaf, full_rows)  # (BU, B, U), symmetric
        return _PathBatch(s.detach(), None, hv.reshape(B * U, B * U).T.contiguous().detach())

    def _hvps(self, s: Tensor, leaf: Tensor, rows: Tensor) -> Tensor:
        """Rows ``H r`` for each ``r`` in ``rows`` (``(k, B, U)``).

        These products differentiate twice through the distance, i.e. the transform.
        They are batched when the transform allows it; the JTFS's fused backward
        kernels write into preallocated outputs (``out=``), which vmap cannot batch,
        so the first failed attempt switches these products (only) to a loop, for
        good and without a warning (:attr:`hvp_loop_reason` says why).  Measured on
        the README warmup example (``benchmarks/bench_hvp.py``): see
        docs/samplers.md."""
        if self.vectorize and self.hvp_loop_reason is None:
            try:
                (hv,) = torch.autograd.grad(s, leaf, grad_outputs=rows, retain_graph=True, is_grads_batched=True,
                                            materialize_grads=True)
                return hv
            except RuntimeError as exc:
                msg = str(exc)
                if "vmap" not in msg.lower() and "batch" not in msg.lower():
                    raise
                self.hvp_loop_reason = msg.splitlines()[0] if msg else type(exc).__name__
        out = []
        for r in rows:
            (h,) = torch.autograd.grad(s, leaf, grad_outputs=r, retain_graph=True, materialize_grads=True)
            out.append(h)
        return torch.stack(out, 0)

    def _param_grads(self, batch: _Batch, pb: _PathBatch, group: Sequence[Tensor]) -> list[Tensor]:
        """``g_u`` of the quadratic model, shape ``(U, W)`` (vectorized) or a list of
        ``U`` tensors ``(W,)``, with graphs to ``group``."""
        theta = batch.theta
        U = theta.size(1)
        s_model = pb.s + pb.apply(theta - batch.theta_leaf.detach())  # value == s, first derivatives exact
        eye_u = torch.eye(U, dtype=theta.dtype, device=theta.device)
        if self.vectorize:
            go = s_model.unsqueeze(0) * eye_u.unsqueeze(1)  # (U, B, U)
            grads = torch.autograd.grad(
                theta, group, grad_outputs=go, create_graph=True, retain_graph=True, is_grads_batched=True, materialize_grads=True
            )
            return [_flat(grads, U)]
        out = []
        for u in range(U):
            go = s_model * eye_u[u]
            grads = torch.autograd.grad(theta, group, grad_outputs=go, create_graph=True, retain_graph=True, materialize_grads=True)
            out.append(_flat(grads, None))
        return out

    def _matvec_fn(self, graphs: list[list[Tensor]], group: Sequence[Tensor], U: int) -> Callable[[Tensor, Tensor], Tensor]:
        def matvec(v: Tensor, which: Tensor) -> Tensor:
            total = torch.zeros_like(v)
            for g in graphs:
                if self.vectorize:
                    G = g[0]
                    if not G.requires_grad:
                        continue
                    k, W = v.shape
                    go = torch.zeros(k, U, W, dtype=v.dtype, device=v.device)
                    go[torch.arange(k, device=v.device), which.to(v.device)] = v
                    res = torch.autograd.grad(G, group, grad_outputs=go, retain_graph=True, is_grads_batched=True, materialize_grads=True)
                    total += _flat(res, k)
                else:
                    for i, u in enumerate(which.tolist()):
                        G = g[u]
                        if not G.requires_grad:
                            continue
                        res = torch.autograd.grad(G, group, grad_outputs=v[i], retain_graph=True, materialize_grads=True)
                        total[i] += _flat(res, None)
            return total

        return matvec

    def path_curvatures(
        self,
        dist_fn: DistFn,
        path_idx: int,
        *,
        generator: Optional[torch.Generator] = None,
        param_groups: Optional[Sequence[Sequence[Tensor]]] = None,
    ) -> Tensor:
        """Signed largest-magnitude eigenvalues of ``A_{u,p}`` (summed over batches).

        Args:
            dist_fn: ``dist_fn(x, x_hat, path_idx) -> scalar``; no side effects.
            path_idx: the path ``p``.
            generator: CPU generator for the random vectors (``None``: seed 0).
            param_groups: compute separately for each group of ``params`` (the
                warmup's ``agg != "none"``); ``None`` = one group of all params.

        Returns:
            ``(G, U)`` float64 CPU tensor, ``G`` = number of parameter groups.
        """
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if self.vectorize:
            state = None if generator is None else generator.get_state()
            try:
                return self._path_curvatures(dist_fn, path_idx, generator, param_groups)
            except RuntimeError as exc:
                msg = str(exc).lower()
                if "vmap" not in msg and "batch" not in msg:
                    raise
                warnings.warn(
                    f"batched (is_grads_batched) Hessian-vector products failed ({exc}); "
                    "falling back to a loop over the products (vectorize=False)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.vectorize = False
                if generator is not None and state is not None:
                    generator.set_state(state)
        return self._path_curvatures(dist_fn, path_idx, generator, param_groups)

    def _path_curvatures(
        self,
        dist_fn: DistFn,
        path_idx: int,
        generator: Optional[torch.Generator],
        param_groups: Optional[Sequence[Sequence[Tensor]]],
    ) -> Tensor:
        gen = _default_generator(generator)
        groups = [list(self.params)] if param_groups is None else [list(g) for g in param_groups]
        if not groups or any(not g for g in groups):
            raise ValueError("param_groups must be a non-empty list of non-empty parameter lists")
        batches = self._prepare()
        U = int(self.n_theta)  # set by _prepare
        # start vectors first, so that they do not depend on the Hessian mode or batches
        inits = [torch.rand(U, sum(p.numel() for p in group), generator=gen, dtype=torch.float64) for group in groups]
        derivs = [self._loss_derivatives(dist_fn, path_idx, b, gen) for b in batches]
        out = torch.empty(len(groups), U, dtype=torch.float64)
        for gi, group in enumerate(groups):
            graphs = [self._param_grads(b, pb, group) for b, pb in zip(batches, derivs)]
            matvec = self._matvec_fn(graphs, group, U)
            out[gi] = largest_eigenvalues(
                matvec,
                inits[gi].size(1),
                U,
                n_iter=self.n_iter,
                tol=self.tol,
                dtype=group[0].dtype,
                device=group[0].device,
                init=inits[gi],
                method=self.method,
            )
            del graphs
        return out

    def operator_matrices(
        self, dist_fn: DistFn, path_idx: int, *, generator: Optional[torch.Generator] = None, chunk: int = 256
    ) -> Tensor:
        """The dense operators ``A_{u,p}`` (summed over batches), for diagnostics and
        exact eigenvalues on small encoders: ``W`` products per ``u``, ``chunk`` at a
        time (always batched).

        Returns:
            ``(U, W, W)`` tensor (the params' dtype), ``W`` = number of encoder weights.
        """
        if not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        gen = _default_generator(generator)
        batches = self._prepare()
        U = int(self.n_theta)
        group = list(self.params)
        derivs = [self._loss_derivatives(dist_fn, path_idx, b, gen) for b in batches]
        vectorize, self.vectorize = self.vectorize, True
        try:
            graphs = [self._param_grads(b, pb, group) for b, pb in zip(batches, derivs)]
            matvec = self._matvec_fn(graphs, group, U)
            W = sum(p.numel() for p in group)
            eye = torch.eye(W, dtype=group[0].dtype, device=group[0].device)
            rows = []
            for u in range(U):
                # row i of A is the vector-Jacobian product with e_i
                parts = [matvec(eye[i : i + chunk], torch.full((min(chunk, W - i),), u, dtype=torch.int64)) for i in range(0, W, chunk)]
                rows.append(torch.cat(parts, 0))
        finally:
            self.vectorize = vectorize
        return torch.stack(rows, 0)


def path_curvatures(
    dist_fn: DistFn,
    path_idx: int,
    theta_fn: Callable[..., Tensor],
    synth_fn: Callable[..., Tensor],
    theta_fn_kwargs: Sequence[Mapping[str, Any]],
    params: Sequence[Tensor],
    synth_fn_kwargs: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
    n_iter: int = 20,
    generator: Optional[torch.Generator] = None,
    *,
    tol: Optional[float] = 1e-4,
    loss_hessian: LossHessianMode = "auto",
    vectorize: bool = True,
    method: EigenMethod = "power",
) -> Tensor:
    """``C_{u,p}`` for one path: signed largest-magnitude eigenvalue per synth parameter.

    One-shot wrapper of :class:`CurvatureEstimator` (use the class to share the
    encoder/synth forwards between paths).  Returns a ``(U,)`` float64 CPU tensor.

    Example:
        >>> import torch
        >>> enc = torch.nn.Linear(16, 2)
        >>> dec = torch.nn.Linear(2, 16)
        >>> dist = lambda x, xh, p: (x - xh).pow(2).sum(-1).mean() * (p + 1)
        >>> kw = [{"x": torch.randn(3, 16)}]
        >>> path_curvatures(dist, 0, lambda x: enc(x), lambda t: dec(t), kw, list(enc.parameters())).shape
        torch.Size([2])
    """
    est = CurvatureEstimator(
        theta_fn,
        synth_fn,
        theta_fn_kwargs,
        params,
        synth_fn_kwargs,
        n_iter=n_iter,
        tol=tol,
        loss_hessian=loss_hessian,
        vectorize=vectorize,
        method=method,
    )
    try:
        return est.path_curvatures(dist_fn, path_idx, generator=generator)[0]
    finally:
        est.release()
