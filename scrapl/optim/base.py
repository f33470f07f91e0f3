"""The shared engine of P-Adam, P-SAGA and P-Adam+SAGA (:class:`PathOptimizerBase`)
and the per-path row storage used by it and by :mod:`scrapl.compat.hooks`.

Per-parameter state (``optimizer.state[p]``), all plain tensors / numbers / dicts so
that ``torch.load(weights_only=True)`` restores it:

* ``step`` (int): number of optimizer steps that updated this parameter: the
  paper's global step ``k`` (1-based, ``k = step`` during the update) as long as the
  parameter receives a gradient at every step.
* ``grad_scale`` (float): RMS ``s`` of the first non-zero gradient (0.0 until then);
  ``eps_mode="relative"`` uses ``eps * s**2``.
* ``m``, ``v`` (P-Adam): ``{path: tensor}`` first and second moments of each path
  drawn so far; ``tau`` ``{path: int}``: the step at which it was last drawn.
* ``g_hat`` (P-SAGA): ``{path: tensor}`` last direction of each path drawn so far
  (its keys are the set ``G``); ``g_sum``: tensor, the running sum of ``g_hat``.

Rows are created when a path is first drawn, so memory grows with the number of
paths seen, up to ``P x weights`` per buffer.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any, Callable, Iterable, Mapping, Optional

import torch
from torch import Tensor

from scrapl import checks
from scrapl.interfaces import PathAwareOptimizer, PathSource
from scrapl.optim import functional as F
from scrapl.optim.config import STATE_DTYPES, check_state_device

__all__ = ["PathOptimizerBase", "PathSource", "resolve_path", "compute_dtype", "RowStore", "check_state_layout",
           "check_path_args", "validate_path_state"]

ROW_KEYS = ("m", "v", "g_hat")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the update is computed in: float64 for float64 parameters, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def resolve_path(path: Any, path_source: Optional[PathSource], n_paths: int) -> int:
    """The path of this step: ``path`` if given, else ``path_source()``.

    Raises:
        ValueError: if neither gives a path, or the path is out of range.
        TypeError: if the path is not an integer.
    """
    if path is not None:
        return checks.path_index(path, n_paths, "path")
    if path_source is None:
        raise ValueError(
            "no path for this optimizer step: pass step(path=i), or build the optimizer with "
            "path_source=<callable returning the loss's current path> (e.g. via scrapl.build(...).optimizer)"
        )
    got = path_source()
    if got is None:
        raise ValueError(
            "no path for this optimizer step: path_source() returned None (no training forward of "
            "the SCRAPL loss since the last step?); run the loss in training mode before "
            "optimizer.step(), or pass step(path=i)"
        )
    return checks.path_index(got, n_paths, "path_source()")


class RowStore:
    """Moves per-path rows between their storage (dtype/device) and the compute
    dtype/device of a parameter.  Stateless apart from the storage settings."""

    def __init__(self, dtype: torch.dtype, device: Optional[torch.device]) -> None:
        self.dtype = dtype
        self.device = device

    def target_device(self, ref: Tensor) -> torch.device:
        return ref.device if self.device is None else self.device

    def compatible(self, ref: Tensor) -> bool:
        """True if rows can be used in place for compute tensors like ``ref``."""
        return self.dtype == ref.dtype and self.target_device(ref) == ref.device

    def lossy(self, ref: Tensor) -> bool:
        """True if storing values of ``ref``'s dtype rounds them."""
        return self.dtype != ref.dtype

    def fetch(self, rows: Mapping[int, Tensor], path: int, ref: Tensor) -> Optional[Tensor]:
        """The row of ``path`` as a compute tensor like ``ref`` (the row itself when
        compatible, else a converted copy), or ``None`` if the path has no row."""
        row = rows.get(path)
        if row is None:
            return None
        if row.dtype == ref.dtype and row.device == ref.device:
            return row
        return row.to(device=ref.device, dtype=ref.dtype)

    def put(self, rows: dict[int, Tensor], path: int, work: Tensor, *, owned: bool) -> None:
        """Store compute tensor ``work`` as the row of ``path``.

        ``owned``: ``work`` may be kept as the row (no other user holds it).
        """
        row = rows.get(path)
        if row is work:
            return
        device = self.target_device(work)
        if owned and work.dtype == self.dtype and work.device == device:
            rows[path] = work
        elif row is not None and row.dtype == self.dtype and row.device == device and row.shape == work.shape:
            row.copy_(work)
        else:
            rows[path] = work.to(device=device, dtype=self.dtype, copy=True)

    def cast(self, row: Tensor, param_device: torch.device) -> Tensor:
        """A loaded row moved to this storage (no copy if already there);
        ``param_device`` is used when the storage device is the parameter's."""
        return row.to(device=param_device if self.device is None else self.device, dtype=self.dtype)


def check_path_args(n_paths: Any, path_source: Any) -> None:
    """The two arguments every path-aware optimizer takes besides its parameters.

    Raises:
        ValueError: ``n_paths`` is not an int >= 1.
        TypeError: ``path_source`` is neither ``None`` nor callable.
    """
    if isinstance(n_paths, bool) or not isinstance(n_paths, int) or n_paths < 1:
        raise ValueError(f"n_paths must be an int >= 1, got {n_paths!r}")
    if path_source is not None and not callable(path_source):
        raise TypeError(f"path_source must be a callable returning int | None, got {type(path_source).__name__}")


def _real_shape(p: Tensor) -> tuple[int, ...]:
    return tuple(torch.view_as_real(p).shape) if p.is_complex() else tuple(p.shape)


def check_state_layout(state_dict: Any, param_groups: list[dict[str, Any]], n_paths: int, what: str,
                       defaults: Mapping[str, Any], saved_by: str) -> None:
    """The checks every path-aware optimizer makes before loading ``state_dict``: a
    mapping with ``state`` and ``param_groups``, the same group and parameter counts
    as ``param_groups``, (when recorded) the same ``n_paths``, and every saved group
    holding this optimizer's hyperparameters (the keys of ``defaults``; ``saved_by``
    says what a group without them was saved by).

    Raises:
        ValueError / TypeError naming the mismatch.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{what} state_dict must be a mapping, got {type(state_dict).__name__}")
    missing = [k for k in ("state", "param_groups") if k not in state_dict]
    if missing:
        raise ValueError(f"{what} state_dict is missing {missing}: not an optimizer state")
    saved_n = state_dict.get("n_paths")
    if saved_n is not None and saved_n != n_paths:
        raise ValueError(f"{what} state is for n_paths={saved_n!r}, this optimizer has n_paths={n_paths}: "
                         "state from another transform configuration is refused")
    groups = state_dict["param_groups"]
    if not isinstance(groups, (list, tuple)) or len(groups) != len(param_groups):
        n = len(groups) if isinstance(groups, (list, tuple)) else type(groups).__name__
        raise ValueError(f"{what} state has {n} parameter groups, this optimizer has {len(param_groups)}")
    for i, (saved, group) in enumerate(zip(groups, param_groups)):
        if not isinstance(saved, Mapping) or len(saved.get("params", ())) != len(group["params"]):
            n = len(saved.get("params", ())) if isinstance(saved, Mapping) else "?"
            raise ValueError(f"{what} state's param_groups[{i}] has {n} parameters, this optimizer's has "
                             f"{len(group['params'])}")
    if not isinstance(state_dict["state"], Mapping):
        raise ValueError(f"{what} state_dict['state'] must be a mapping, got {type(state_dict['state']).__name__}")
    for i, saved in enumerate(groups):
        lacking = sorted(k for k in defaults if k not in saved)
        if lacking:
            raise ValueError(f"{what} state's param_groups[{i}] lacks {lacking}: it was saved by {saved_by}")


def validate_path_state(
    state_dict: Any,
    param_groups: list[dict[str, Any]],
    n_paths: int,
    defaults: Mapping[str, Any],
    check_hyper: Callable[[Mapping[str, Any]], None],
    what: str,
) -> None:
    """Validate a :class:`PathOptimizerBase` state against this optimizer before
    anything is applied: layout (:func:`check_state_layout`), every group's
    hyperparameters (present and valid), every per-path row (path in ``[0,
    n_paths)``, a tensor of the parameter's shape) and running sum.

    Raises:
        ValueError naming the group, parameter, buffer and path at fault.
    """
    check_state_layout(state_dict, param_groups, n_paths, what, defaults,
                       "another kind of optimizer (e.g. sgd or torch.optim.Adam), not a path-aware one")
    for i, saved in enumerate(state_dict["param_groups"]):
        try:
            check_hyper(saved)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} state's param_groups[{i}]: {exc}") from None
    shape_of = {sid: _real_shape(p)
                for saved, group in zip(state_dict["param_groups"], param_groups)
                for sid, p in zip(saved["params"], group["params"])}
    for key, st in state_dict["state"].items():
        if key not in shape_of:
            raise ValueError(f"{what} state holds parameter id {key!r}, which no saved parameter group lists")
        if not isinstance(st, Mapping):
            raise ValueError(f"{what} state of parameter {key!r} must be a mapping, got {type(st).__name__}")
        shape = shape_of[key]
        for buf in (*ROW_KEYS, "tau"):
            rows = st.get(buf)
            if rows is None:
                continue
            if not isinstance(rows, Mapping):
                raise ValueError(f"{what} state[{key!r}][{buf!r}] must map paths to values, got {type(rows).__name__}")
            for path, row in rows.items():
                try:
                    idx = int(path)
                except (TypeError, ValueError):
                    raise ValueError(f"{what} state[{key!r}][{buf!r}] has a non-integer path {path!r}") from None
                if not 0 <= idx < n_paths:
                    raise ValueError(f"{what} state[{key!r}][{buf!r}] holds path {idx}, outside [0, {n_paths}): "
                                     f"state from an optimizer with more paths is refused")
                if buf == "tau":
                    continue
                if not isinstance(row, Tensor) or tuple(row.shape) != shape:
                    got = tuple(row.shape) if isinstance(row, Tensor) else type(row).__name__
                    raise ValueError(f"{what} state[{key!r}][{buf!r}][{idx}] must be a tensor of shape {shape}, got {got}")
        g_sum = st.get("g_sum")
        if g_sum is not None and (not isinstance(g_sum, Tensor) or tuple(g_sum.shape) != shape):
            got = tuple(g_sum.shape) if isinstance(g_sum, Tensor) else type(g_sum).__name__
            raise ValueError(f"{what} state[{key!r}]['g_sum'] must be a tensor of shape {shape}, got {got}")


def first_grad_scale(grad: Tensor) -> float:
    """RMS of ``grad`` in double precision (0.0 for an all-zero gradient)."""
    return float(grad.detach().double().square().mean().sqrt().item())


def tensor_bytes(obj: Any) -> int:
    """Total bytes of the tensors in a (nested) state value."""
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


class _Work:
    """Compute-side views of one parameter for one step."""

    __slots__ = ("param", "weight", "grad", "state", "k", "write_back")

    def __init__(self, param: Tensor, weight: Tensor, grad: Tensor, state: dict, k: int, write_back: bool) -> None:
        self.param = param  # the parameter
        self.weight = weight  # its compute-dtype (real) view or copy
        self.grad = grad  # its gradient in the compute dtype (may be p.grad itself: read only)
        self.state = state
        self.k = k  # this parameter's step count (the paper's k)
        self.write_back = write_back  # weight is a copy to write back into param


class PathOptimizerBase(PathAwareOptimizer):
    """Engine shared by :class:`~scrapl.optim.PAdam`, :class:`~scrapl.optim.PSAGA`
    and :class:`~scrapl.optim.PAdamSAGA` (use those).

    A step, for the drawn path ``p`` and each parameter with a gradient:

    1. ``g_cur`` = the P-Adam output (if ``use_p_adam``) or the raw gradient;
    2. ``d`` = the P-SAGA direction built from ``g_cur`` (if ``use_p_saga``) or
       ``g_cur``;
    3. ``w <- w - lr * (d + weight_decay * w)`` (plain SGD).

    The update is computed in float32 (float64 for float64 parameters) on the
    parameter's device; per-path rows live in ``state_dtype`` on ``state_device``.
    """

    use_p_adam: bool = True
    use_p_saga: bool = True
    display_name: str = "PathOptimizer"

    def __init__(
        self,
        params: Iterable[Any],
        n_paths: int,
        *,
        path_source: Optional[PathSource] = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        eps_mode: str = "relative",
        weight_decay: float = 0.0,
        state_dtype: str = "float32",
        state_device: Optional[str] = None,
    ) -> None:
        check_path_args(n_paths, path_source)
        defaults: dict[str, Any] = dict(lr=lr, weight_decay=weight_decay, state_dtype=state_dtype, state_device=state_device)
        if self.use_p_adam:
            defaults.update(betas=betas, eps=eps, eps_mode=eps_mode)
        self._check_hyper(defaults)
        self.n_paths = n_paths
        self.path_source = path_source
        self.last_path: Optional[int] = None
        # Per-parameter scratch buffers (not state: never saved, rebuilt on demand).
        self._workspace: dict[Tensor, Tensor] = {}
        super().__init__(params, defaults)

    # ----------------------------------------------------------------- validation
    def _check_hyper(self, group: Mapping[str, Any]) -> None:
        lr = group["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a finite float >= 0, got {lr!r}")
        wd = group["weight_decay"]
        if not (isinstance(wd, (int, float)) and wd >= 0 and math.isfinite(wd)):
            raise ValueError(f"weight_decay must be a finite float >= 0, got {wd!r}")
        if group["state_dtype"] not in STATE_DTYPES:
            raise ValueError(f"state_dtype must be one of {sorted(STATE_DTYPES)}, got {group['state_dtype']!r}")
        check_state_device(group["state_device"])
        if not self.use_p_adam:
            return
        betas = group["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if not (isinstance(b, (int, float)) and 0.0 <= b < 1.0):
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}")
        eps = group["eps"]
        if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a finite float > 0, got {eps!r}")
        if group["eps_mode"] not in ("relative", "absolute"):
            raise ValueError(f"eps_mode must be 'relative' or 'absolute', got {group['eps_mode']!r}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (hyperparameters missing from it take the defaults)."""
        super().add_param_group(param_group)
        self._check_hyper(self.param_groups[-1])

    # ----------------------------------------------------------------- step
    # Runs eagerly inside ``torch.compile`` regions (one graph break): the step reads
    # the path and, at a path's first step, the gradient's scale as Python numbers,
    # which dynamo would turn into graph breaks and recompilations.
    @torch.compiler.disable
    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None, path: Optional[int] = None) -> Any:  # type: ignore[override]
        """Update the parameters with the gradient produced by one path.

        Args:
            closure: optional callable re-evaluating the model and returning the
                loss (run with gradients enabled, before the path is looked up).
            path: the path index that produced the gradients; ``None`` asks
                ``path_source()`` (called exactly once per step).

        Returns:
            the closure's loss, or ``None``.

        Raises:
            ValueError: if neither ``path`` nor ``path_source`` gives a path.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        p_idx = resolve_path(path, self.path_source, self.n_paths)
        self.last_path = p_idx
        for group in self.param_groups:
            self._step_group(group, p_idx)
        return loss

    def _step_group(self, group: dict[str, Any], path: int) -> None:
        lr = float(group["lr"])
        wd = float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in group.get("betas", (0.0, 0.0)))
        eps = float(group.get("eps", 0.0))
        relative = group.get("eps_mode") == "relative"
        store = RowStore(
            STATE_DTYPES[group["state_dtype"]],
            None if group["state_device"] is None else torch.device(group["state_device"]),
        )
        works: list[_Work] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise TypeError(f"{self.display_name} does not support sparse gradients")
            state = self.state[p]
            if not state:
                self._init_state(state)
            state["step"] += 1
            param = torch.view_as_real(p) if p.is_complex() else p
            grad = torch.view_as_real(p.grad) if p.grad.is_complex() else p.grad
            cdt = compute_dtype(param.dtype)
            write_back = param.dtype != cdt
            weight = param.to(cdt) if write_back else param
            works.append(_Work(p, weight, grad.to(cdt), state, state["step"], write_back))
        if not works:
            return
        # Bucket by (device, dtype) so that each foreach call is homogeneous.
        buckets: dict[tuple[torch.device, torch.dtype], list[_Work]] = {}
        for w in works:
            buckets.setdefault((w.weight.device, w.weight.dtype), []).append(w)
        for bucket in buckets.values():
            self._step_bucket(bucket, path, lr, wd, beta1, beta2, eps, relative, store)
        for w in works:
            if w.write_back:
                target = torch.view_as_real(w.param) if w.param.is_complex() else w.param
                target.copy_(w.weight)

    def _init_state(self, state: dict[str, Any]) -> None:
        """Fill in missing state entries (a fresh state, or one loaded from another
        path-aware optimizer)."""
        state.setdefault("step", 0)
        state.setdefault("grad_scale", 0.0)
        if self.use_p_adam:
            state.setdefault("m", {})
            state.setdefault("v", {})
            state.setdefault("tau", {})
        if self.use_p_saga:
            state.setdefault("g_hat", {})

    def _workspace_for(self, w: _Work) -> Tensor:
        """A scratch buffer shaped like the parameter's compute tensors (kept between
        steps, not part of the state; P-SAGA rotates it with the stored rows)."""
        buf = self._workspace.pop(w.param, None)
        if buf is None or buf.shape != w.grad.shape or buf.dtype != w.grad.dtype or buf.device != w.grad.device:
            buf = torch.empty_like(w.grad)
        return buf

    def _step_bucket(
        self,
        bucket: list[_Work],
        path: int,
        lr: float,
        wd: float,
        beta1: float,
        beta2: float,
        eps: float,
        relative: bool,
        store: RowStore,
    ) -> None:
        weights = [w.weight for w in bucket]
        grads = [w.grad for w in bucket]
        if wd != 0.0 and lr != 0.0:
            torch._foreach_mul_(weights, 1.0 - lr * wd)
        # Buffers that will hold g_cur (the new stored direction of the path).
        outs = [self._workspace_for(w) for w in bucket]

        # 1. g_cur: the P-Adam output, or the raw gradient.
        if self.use_p_adam:
            ms, vs, scalars, eps_list = [], [], [], []
            cache: dict[tuple[int, int], F.PAdamScalars] = {}
            for w in bucket:
                st = w.state
                tau = st["tau"].get(path, 0)
                sc = cache.get((w.k, tau))
                if sc is None:
                    sc = cache[(w.k, tau)] = F.p_adam_scalars(w.k, tau, self.n_paths, beta1, beta2)
                scalars.append(sc)
                m = store.fetch(st["m"], path, w.grad)
                v = store.fetch(st["v"], path, w.grad)
                ms.append(torch.zeros_like(w.grad) if m is None else m)
                vs.append(torch.zeros_like(w.grad) if v is None else v)
                if relative:
                    if st["grad_scale"] == 0.0:
                        s0 = first_grad_scale(w.grad)
                        st["grad_scale"] = s0 if math.isfinite(s0) else 0.0
                    s = st["grad_scale"]
                    eps_list.append(eps * s * s if s > 0.0 else eps)
                else:
                    eps_list.append(eps)
            F.p_adam_moments_(grads, ms, vs, scalars)
            for w, m, v in zip(bucket, ms, vs):
                store.put(w.state["m"], path, m, owned=True)
                store.put(w.state["v"], path, v, owned=True)
                w.state["tau"][path] = w.k
            scales = F.p_adam_denominators_(outs, vs, scalars, eps_list, eps_inside_sqrt=True)
            if not self.use_p_saga:
                torch._foreach_addcdiv_(weights, ms, outs, [-lr * c for c in scales])
                for w, buf in zip(bucket, outs):
                    self._workspace[w.param] = buf
                return
            F.p_adam_outputs_(outs, ms, scales)
        else:
            torch._foreach_copy_(outs, grads)

        # 2.-3. P-SAGA direction applied with -lr; outs hold g_cur.
        olds: list[Optional[Tensor]] = []
        sums: list[Tensor] = []
        avg_scales: list[float] = []
        stored: list[Optional[Tensor]] = []  # rounded g_cur (compute dtype), lossy storage only
        low: list[Optional[Tensor]] = []  # rounded g_cur in the storage dtype/device
        for w, g in zip(bucket, outs):
            st = w.state
            olds.append(store.fetch(st["g_hat"], path, g))
            n_seen = len(st["g_hat"])
            avg_scales.append(1.0 / n_seen if n_seen > 0 else 0.0)
            gs = st.get("g_sum")
            if gs is None or gs.device != g.device or gs.dtype != g.dtype:
                gs = torch.zeros_like(g) if gs is None else gs.to(device=g.device, dtype=g.dtype)
                st["g_sum"] = gs
            sums.append(gs)
            if store.lossy(g):
                g_low = g.to(device=store.target_device(g), dtype=store.dtype)
                low.append(g_low)
                stored.append(g_low.to(device=g.device, dtype=g.dtype))
            else:
                low.append(None)
                stored.append(None)
        F.p_saga_apply_(weights, outs, olds, sums, avg_scales=avg_scales, alpha=-lr, g_cur_stored=stored)
        for w, g, g_low, old in zip(bucket, outs, low, olds):
            rows = w.state["g_hat"]
            row = rows.get(path)
            if g_low is not None:
                rows[path] = g_low
                self._workspace[w.param] = g
            elif row is not None and row is old:
                # In-place storage: the new direction becomes the row, the old row
                # (now scratch) the workspace of the next step.
                rows[path] = g
                self._workspace[w.param] = old
            else:
                store.put(rows, path, g, owned=True)
                if rows[path] is not g:
                    self._workspace[w.param] = g

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Optimizer.state_dict()`` plus ``n_paths`` (checked on load)."""
        sd = super().state_dict()
        sd["n_paths"] = self.n_paths
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state produced by :meth:`state_dict`; per-path rows go to the
        group's ``state_dtype``/``state_device`` (not to the parameter's dtype, as
        ``torch.optim.Optimizer`` would do), running sums to the compute dtype.

        The whole state is validated before any of it is applied (all or nothing);
        state of another path-aware optimizer (P-Adam into P-Adam+SAGA, ...) loads,
        its missing buffers start empty.

        Raises:
            ValueError: a state made for another number of paths, another parameter
                layout, by a non-path-aware optimizer (e.g. ``sgd`` or
                ``torch.optim.Adam``), or holding malformed per-path rows; the
                message names the mismatch.
        """
        validate_path_state(state_dict, self.param_groups, self.n_paths, self.defaults, self._check_hyper,
                            self.display_name)
        sd = dict(state_dict)
        sd.pop("n_paths", None)
        stripped: dict[Any, dict[str, Any]] = {}
        stash: dict[Any, dict[str, Any]] = {}
        for key, st in dict(sd["state"]).items():
            st = dict(st)
            stash[key] = {k: st.pop(k) for k in (*ROW_KEYS, "g_sum") if k in st}
            stripped[key] = st
        sd["state"] = stripped
        super().load_state_dict(sd)
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        for saved_id, p in zip(saved_ids, params):
            if saved_id not in stash:
                continue
            group = group_of[id(p)]
            store = RowStore(
                STATE_DTYPES[group["state_dtype"]],
                None if group["state_device"] is None else torch.device(group["state_device"]),
            )
            cdt = compute_dtype(p.real.dtype if p.is_complex() else p.dtype)
            st = self.state[p]
            for k, v in stash[saved_id].items():
                if k == "g_sum":
                    st[k] = v.to(device=p.device, dtype=cdt)
                else:
                    st[k] = {int(path): store.cast(row, p.device) for path, row in v.items()}
            if "tau" in st:
                st["tau"] = {int(k): int(v) for k, v in st["tau"].items()}
        for st in self.state.values():
            if st:
                self._init_state(st)
        self._workspace.clear()

    # ----------------------------------------------------------------- memory
    def _row_buffers(self) -> int:
        return (2 if self.use_p_adam else 0) + (1 if self.use_p_saga else 0)

    def n_weights(self) -> int:
        """Number of weights (real scalars) optimized."""
        return sum(p.numel() * (2 if p.is_complex() else 1) for g in self.param_groups for p in g["params"])

    def paths_seen(self) -> int:
        """Largest number of paths holding state for any parameter."""
        best = 0
        for st in self.state.values():
            for k in ROW_KEYS:
                if k in st:
                    best = max(best, len(st[k]))
        return best

    def state_bytes(self) -> int:
        """Bytes held by the optimizer state now (per-path rows and running sums)."""
        return sum(tensor_bytes(st) for st in self.state.values())

    def max_state_bytes(self) -> int:
        """Bytes the state reaches once every path has been drawn::

            sum over parameters of W_p * (n_buf * P * itemsize(state_dtype)
                                          + [P-SAGA] itemsize(compute dtype))

        with ``n_buf`` = 2 (P-Adam: m, v) + 1 (P-SAGA: g_hat).
        """
        total = 0
        for g in self.param_groups:
            isz = torch.empty((), dtype=STATE_DTYPES[g["state_dtype"]]).element_size()
            for p in g["params"]:
                n = p.numel() * (2 if p.is_complex() else 1)
                total += n * self._row_buffers() * self.n_paths * isz
                if self.use_p_saga:
                    real = p.real.dtype if p.is_complex() else p.dtype
                    total += n * torch.empty((), dtype=compute_dtype(real)).element_size()
        return total

    def __repr__(self) -> str:
        head = (
            f"{self.display_name}(P={self.n_paths}, weights={self.n_weights():,}, "
            f"paths seen={self.paths_seen()}, state bytes now={_fmt_bytes(self.state_bytes())}, "
            f"at most={_fmt_bytes(self.max_state_bytes())})"
        )
        groups = []
        for i, g in enumerate(self.param_groups):
            items = ", ".join(f"{k}={g[k]!r}" for k in sorted(g) if k != "params")
            groups.append(f"  group {i}: {items}")
        return "\n".join([head, *groups])


def _fmt_bytes(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n} B"
