"""The JTFS ``nn.Module``: buffers built once from the plan, thin forwards into
:mod:`scrapl.transforms.jtfs.core`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scrapl import checks
from scrapl.interfaces import PathInfo, ScatteringTransform
from scrapl.transforms.jtfs import core
from scrapl.transforms.jtfs.buffers import BufferPool
from scrapl.transforms.jtfs.config import JTFSConfig
from scrapl.transforms.jtfs.filterbank import JTFSPlan, build_plan, design_filterbank
from scrapl.transforms.jtfs.path import PathGeometry, PathPair
from scrapl.transforms.ops import run_eagerly
from scrapl.transforms.scale import normalise, rescale

__all__ = ["JTFS"]


@dataclass(frozen=True)
class _Group:
    k: int
    start: int
    stop: int
    L: int
    one_sided: bool
    win_start: tuple[int, ...]


@dataclass(frozen=True)
class _Second:
    n2: int
    j2: int
    n1_max: int
    T2: int
    n_groups: int
    folded: bool
    row_start: tuple[int, ...]
    row_stop: tuple[int, ...]
    segments: tuple


@dataclass(frozen=True)
class _PathPlan:
    """What :meth:`JTFS.forward_path` looks up for one path and time crop, built on
    first use: views of the path's rows of the frequential operator, of its
    time-averaging matrix and of its output projection and bias, the frequential
    stage in the native kernels' layout (``freq``), and the geometry of the fused
    one-path pipeline (``geo``; ``None`` when a first-order group is not one-sided)."""

    n2: int
    M: Tensor
    A: Tensor
    P: Tensor
    bias: Tensor
    freq: core.FreqOperands
    geo: PathGeometry | None


class _PlanCache(dict):
    """``(path, crop_time) -> _PathPlan`` and ``("AT", j2, crop_time) ->`` the
    transposed time averaging of the native frequential kernels; emptied whenever the buffers are moved or
    converted (``JTFS._apply``) and never copied (a copy of the module rebuilds its
    own)."""

    def __deepcopy__(self, memo: dict) -> "_PlanCache":
        return _PlanCache()

    def __reduce__(self):
        return (_PlanCache, ())


class JTFS(ScatteringTransform):
    """Joint time-frequency scattering whose second-order channels are SCRAPL paths.

    Output equals ``kymatio.torch.TimeFrequencyScattering(shape=(N,), J, Q=(Q1, Q2),
    J_fr, Q_fr, T, F, format='joint', out_type='array')`` as bundled with scrapl-loss
    0.1.0, up to a relative L2 error of about 1e-6 in float32 (it is not bit-exact:
    filters are truncated where they fall below 1e-10 of their peak, and operations
    are reordered).  Path ``i`` is the ``i``-th key ``(n2, n_fr)`` in sorted order
    (the order of scrapl-loss 0.1.0's ``SCRAPLLoss.scrapl_keys``).

    Args:
        shape: signal length ``N`` in samples.
        J, Q1, Q2, J_fr, Q_fr, T, F, check_finite: see
            :class:`~scrapl.transforms.jtfs.JTFSConfig`.

    Shapes (``F_out = N_fr / 2**log2_F`` log-frequency rows, ``T_out`` time frames):

    * :meth:`forward_path` ``(*batch, N) -> (*batch, F_out, T_out)``
    * :meth:`forward` ``(*batch, N) -> (*batch, n_paths, F_out, T_out)``
    * :meth:`forward_full` ``(*batch, N) -> (*batch, n_first + n_paths, F_out, T_out)``,
      the complete joint output (first-order channels ``(n_fr,)`` for
      ``n_fr = 0..K`` first).

    With ``crop_time=False`` the time axis keeps the ``T_out_padded = N_pad / 2**s``
    frames of the padded signal (the frames :class:`scrapl.SCRAPLLoss` compares by default).

    Dtypes: float32 or float64 input matching the buffers' dtype (call ``.double()``
    on the module for float64 input; a mismatch raises ``TypeError``).  All filters are
    non-persistent buffers (derived from the config), so ``.to(device)``,
    ``.double()`` work and ``state_dict()`` stays empty.

    Work memory: on the CPU the large temporaries of a call (FFT planes, spectra,
    second-order rows and their gradients) come from :attr:`buffer_pool`, which keeps
    them for the next call instead of returning them to the allocator (that costs
    thousands of page faults per training step).  It grows to the buffers of the
    largest calls, in a few sizes; ``jtfs.buffer_pool.clear()`` releases it, and
    ``jtfs.buffer_pool = None`` switches pooling off (plain allocations).

    Example::

        >>> import torch
        >>> from scrapl.transforms.jtfs import JTFS
        >>> jtfs = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)
        >>> jtfs.n_paths, jtfs.paths[0]
        (28, (3, 0))
        >>> x = torch.randn(2, 4096)
        >>> jtfs.forward_path(x, 5).shape
        torch.Size([2, 22, 64])
        >>> jtfs(x).shape
        torch.Size([2, 28, 22, 64])
    """

    def __init__(self, shape: int, J: int, Q1: int, Q2: int, J_fr: int, Q_fr: int, T: int | None = None,
                 F: int | None = None, check_finite: bool = True) -> None:
        super().__init__()
        cfg = JTFSConfig(shape=shape, J=J, Q1=Q1, Q2=Q2, J_fr=J_fr, Q_fr=Q_fr, T=T, F=F,
                         check_finite=check_finite)
        self._build(cfg)
        #: Reusable CPU work buffers (see the class docs); never part of the state.
        self.buffer_pool = BufferPool()
        self._plans = _PlanCache()

    def _apply(self, fn, recurse: bool = True):  # .to(), .double(), .cuda(), ...: new buffers
        self._plans = _PlanCache()
        return super()._apply(fn, recurse)

    @classmethod
    def from_config(cls, cfg: JTFSConfig) -> "JTFS":
        """Build from a validated :class:`JTFSConfig`."""
        if not isinstance(cfg, JTFSConfig):
            raise TypeError(f"cfg must be a JTFSConfig, got {type(cfg).__name__}")
        return cls(shape=cfg.shape, J=cfg.J, Q1=cfg.Q1, Q2=cfg.Q2, J_fr=cfg.J_fr, Q_fr=cfg.Q_fr, T=cfg.T,
                   F=cfg.F, check_finite=cfg.check_finite)

    # ------------------------------------------------------------------ construction
    def _buf(self, name: str, array: np.ndarray, dtype: torch.dtype = torch.float32) -> str:
        self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array)).to(dtype), persistent=False)
        return name

    def _build(self, cfg: JTFSConfig) -> None:
        self.config = cfg
        self.check_finite = cfg.check_finite
        bank = design_filterbank(cfg.shape, cfg.J, cfg.Q1, cfg.Q2, cfg.J_fr, cfg.Q_fr, cfg.T, cfg.F)
        plan: JTFSPlan = build_plan(bank)
        b = bank
        self.n_samples = b.N
        self.N_pad, self.pad_left, self.pad_right = b.N_pad, b.pad_left, b.pad_right
        self.T, self.F = b.T, b.F
        self.log2_stride, self.log2_stride_fr = b.log2_stride, b.log2_stride_fr
        self.N_fr = b.N_fr
        self.F_out = plan.F_out
        self.T_out_padded = plan.T_s
        s = b.log2_stride
        self.crop = (b.ind_start[s], b.ind_end[s])
        self.T_out = self.crop[1] - self.crop[0]
        self.n_first = b.K + 1

        # first-order groups: windows read from the extended two-sided input spectrum
        # (bins start + i, i < W, of core.extended_spectrum), values h / 2**k / 2
        self._groups: list[_Group] = []
        self._ext_extra = max(g.idx.shape[1] for g in plan.groups)
        for g in plan.groups:
            W = g.idx.shape[1]
            self._buf(f"_g{g.k}_idx", g.win_start[:, None] + np.arange(W)[None, :], torch.long)
            self._buf(f"_g{g.k}_h2", 0.5 * g.coef[:, :, :1])
            self.register_buffer(f"_g{g.k}_scale", core.rfft_adjoint_scale(g.L), persistent=False)
            self._buf(f"_g{g.k}_phi_idx", g.phi_idx, torch.long)
            self._buf(f"_g{g.k}_phi_coef", g.phi_coef)
            self._groups.append(_Group(g.k, g.start, g.stop, g.L, g.one_sided,
                                       tuple(int(v) for v in g.win_start)))
        # time averaging matrices per j2
        for j2, A in plan.A.items():
            self._buf(f"_A{j2}", A)
        # second order per n2
        self._second: dict[int, _Second] = {}
        for n2, sp in plan.second.items():
            for gi, coef in enumerate(sp.coef):
                self._buf(f"_s{n2}_coef{gi}", coef)
            if sp.fold is not None:
                self._buf(f"_s{n2}_fold", sp.fold, torch.long)
            self._buf(f"_s{n2}_M", sp.M)
            self._second[n2] = _Second(n2, sp.j2, sp.n1_max, sp.T2, len(sp.idx), sp.fold is not None,
                                       tuple(sp.row_start), tuple(sp.row_stop), tuple(sp.segments))
        # paths
        self._paths: list[tuple[int, int]] = list(plan.paths)
        for i, pp in enumerate(plan.path_plans):
            self._buf(f"_p{i}_P", pp.P)
            self._buf(f"_p{i}_bias", pp.bias)
        self._path_index = {key: i for i, key in enumerate(self._paths)}
        # first-order joint channels
        self._buf("_first_M", plan.first_M)
        for nf, P in enumerate(plan.first_P):
            self._buf(f"_first_P{nf}", P)
        self._first_rows = list(zip(plan.first_row_start, plan.first_row_stop))
        self.first_order_keys: list[tuple[int, ...]] = [(nf,) for nf in range(self.n_first)]

        # path descriptions
        q1 = cfg.Q1
        infos = []
        for i, (n2, nf) in enumerate(self._paths):
            xi2 = float(b.psi2_xi[n2])
            xi_fr = float(b.psi_fr_xi[nf])
            spin = int(b.psi_fr_spin[nf])
            spin_txt = {0: "low-pass", 1: "spin +1", -1: "spin -1"}[spin]
            infos.append(PathInfo(
                index=i, key=(n2, nf),
                label=f"n2={n2} (xi2={xi2:.3g} c/s), n_fr={nf} ({spin_txt}, {abs(xi_fr) * q1:.3g} c/oct)",
                temporal_rate=xi2, freq_scale=abs(xi_fr) * q1, spin=spin,
                extra={"n2": n2, "n_fr": nf, "j2": int(b.psi2_j[n2]), "j_fr": int(b.psi_fr_j[nf]),
                       "n1_max": b.n1_max(n2), "xi2": xi2, "sigma2": float(b.psi2_sigma[n2]),
                       "xi_fr": xi_fr, "sigma_fr": float(b.psi_fr_sigma[nf])},
            ))
        self._path_infos = infos
        self._table = {
            "psi1_xi": b.psi1_xi.copy(), "psi1_sigma": b.psi1_sigma.copy(), "psi1_j": b.psi1_j.copy(),
            "psi2_xi": b.psi2_xi.copy(), "psi2_sigma": b.psi2_sigma.copy(), "psi2_j": b.psi2_j.copy(),
            "psi_fr_xi": b.psi_fr_xi.copy(), "psi_fr_sigma": b.psi_fr_sigma.copy(),
            "psi_fr_j": b.psi_fr_j.copy(), "psi_fr_spin": b.psi_fr_spin.copy(),
        }

    # ------------------------------------------------------------------ metadata
    @property
    def paths(self) -> list[tuple[int, ...]]:
        """Second-order keys ``(n2, n_fr)`` in path-index order (sorted)."""
        return list(self._paths)

    @property
    def path_infos(self) -> list[PathInfo]:
        """One :class:`~scrapl.interfaces.PathInfo` per path.

        ``temporal_rate`` is the centre frequency ``xi2`` of the second-order temporal
        wavelet in cycles per sample; ``freq_scale`` is ``|xi_fr| * Q1``, the
        frequential wavelet's centre frequency in cycles per octave (``xi_fr`` is in
        cycles per first-order channel and there are ``Q1`` channels per octave in the
        constant-Q part of the filterbank); ``spin`` is ``sign(xi_fr)``.
        """
        return list(self._path_infos)

    @property
    def channel_keys(self) -> list[tuple[int, ...]]:
        """Keys of the channels of :meth:`forward_full`: ``(n_fr,)`` then ``(n2, n_fr)``."""
        return self.first_order_keys + self.paths

    @property
    def filter_table(self) -> dict[str, np.ndarray]:
        """Centre frequencies, bandwidths, subsamplings and spins of all filters."""
        return {k: v.copy() for k, v in self._table.items()}

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the buffers (and of accepted inputs)."""
        return self._first_M.dtype

    @property
    def device(self) -> torch.device:
        """Device of the buffers."""
        return self._first_M.device

    def extra_repr(self) -> str:
        c = self.config
        return (f"shape={c.shape}, J={c.J}, Q1={c.Q1}, Q2={c.Q2}, J_fr={c.J_fr}, Q_fr={c.Q_fr}, "
                f"T={self.T}, F={self.F}, n_paths={self.n_paths}")

    # ------------------------------------------------------------------ input handling
    def _prepare(self, x: Tensor) -> tuple[Tensor, tuple[int, ...], Tensor]:
        """Validate ``x``; returns it flattened to ``(B, N)`` and divided by a power of
        two per row (see :mod:`scrapl.transforms.scale`), the batch shape and the
        ``(B,)`` scales to multiply the output by."""
        rows, batch_shape = self._rows(x)
        xb, scale = normalise(rows)
        return xb, batch_shape, scale

    def _rows(self, x: Tensor, name: str = "x") -> tuple[Tensor, tuple[int, ...]]:
        """Validate ``x`` (named ``name`` in errors); returns it flattened to ``(B, N)``
        and the batch shape."""
        checks.check_transform_input(x, self._first_M, name=name)
        if x.dtype != self.dtype:
            fix = ".double()" if x.dtype == torch.float64 else ".float()"
            raise TypeError(
                f"{name} is {x.dtype} but the JTFS buffers are {self.dtype}; call {fix} on the transform "
                f"(or convert the input to {self.dtype})"
            )
        if x.dim() == 0 or x.shape[-1] != self.n_samples:
            raise ValueError(
                f"{name} must have shape (*batch, {self.n_samples}) (e.g. (batch, channels, {self.n_samples})), "
                f"got {tuple(x.shape)}"
            )
        batch_shape = tuple(x.shape[:-1])
        B = math.prod(batch_shape)
        if B == 0:
            raise ValueError(f"{name} has an empty batch: shape {tuple(x.shape)}")
        if self.check_finite and not checks.inputs_checked():
            checks.require_finite(x, name)
        return x.reshape(B, self.n_samples), batch_shape

    def _check_index(self, i: object) -> int:
        if checks.inputs_checked():  # the loss validated it
            return int(i)  # type: ignore[call-overload]
        return checks.path_index(i, len(self._paths))

    # ------------------------------------------------------------------ computation
    def _input_spectrum(self, xb: Tensor) -> Tensor:
        """Extended two-sided spectrum of the padded input (see
        :func:`core.extended_spectrum`), complex ``(B, N_pad + max W)``."""
        x_hat = core.RealSpectrum.apply(core.reflect_pad(xb, self.pad_left, self.pad_right))
        return core.extended_spectrum(x_hat, self.N_pad, self._ext_extra)

    def _u1_hats(self, ext: Tensor, groups: list[_Group]) -> list[list[Tensor]]:
        """``rfft(U1)`` for each group, as chunks of consecutive filters, complex
        ``(B, nf_c, L // 2 + 1)`` each (see :func:`core.scalogram_spectra`)."""
        return core.scalogram_spectra(ext, [(g.win_start, getattr(self, f"_g{g.k}_idx"), getattr(self, f"_g{g.k}_h2"),
                                             getattr(self, f"_g{g.k}_scale"), g.L, g.one_sided) for g in groups],
                                     self.buffer_pool)

    def _second_rows(self, u1_hats: list[list[Tensor]], sp: _Second) -> Tensor:
        n2 = sp.n2
        chunks, coef, segments = [], [], []
        for gi in range(sp.n_groups):
            c = getattr(self, f"_s{n2}_coef{gi}")
            for u in u1_hats[gi]:  # every chunk of a group shares its window
                chunks.append(u)
                coef.append(c)
                segments.append(sp.segments[gi])
        fold = getattr(self, f"_s{n2}_fold") if sp.folded else None
        return core.second_order_rows(chunks, coef, segments, sp.T2, fold, self.buffer_pool)

    def _cols(self, crop_time: bool) -> slice:
        return slice(*self.crop) if crop_time else slice(0, self.T_out_padded)

    def _finish_path(self, S: Tensor, i: int, cols: slice) -> Tensor:
        return torch.matmul(getattr(self, f"_p{i}_P"), S) + getattr(self, f"_p{i}_bias")[:, cols]

    @run_eagerly
    def forward_path(self, x: Tensor, i: int, *, crop_time: bool = True) -> Tensor:
        """Coefficients of path ``i`` = key ``paths[i] = (n2, n_fr)``.

        Only the first-order wavelets with ``j1 < j2`` are computed.

        Args:
            x: ``(*batch, N)`` float tensor.
            i: path index in ``[0, n_paths)``.
            crop_time: crop to the ``T_out`` frames of the unpadded signal (channel
                ``n_first + i`` of :meth:`forward_full`); ``False`` keeps all
                ``T_out_padded`` frames of the padded signal.

        Returns:
            ``(*batch, F_out, T_out)`` (or ``T_out_padded`` frames).
        """
        i = self._check_index(i)
        rows, batch_shape = self._rows(x)
        plan = self._plans.get((i, crop_time)) or self._path_plan(i, crop_time)
        if plan.geo is not None:
            out, _ = PathPair.apply(rows, rows.new_empty(0, rows.shape[1]), plan.geo, self.buffer_pool)
        else:
            xb, scale = normalise(rows)
            out = rescale(self._path_rows_unfused(xb, plan), scale)
        return out.reshape(*batch_shape, *out.shape[-2:])

    @run_eagerly
    def forward_path_pair(self, x: Tensor, x_target: Tensor, i: int, *,
                          crop_time: bool = True) -> tuple[Tensor, Tensor]:
        """Path ``i`` of ``x`` and of ``x_target`` in one pass over both batches.

        Equal to ``(forward_path(x, i), forward_path(x_target, i).detach())`` (to the
        last bits of float rounding: the FFTs run on other batch sizes), at the cost
        of one call on the two batches stacked: the fixed per-call costs are paid
        once, and the backward pass runs on ``x``'s rows only (see
        :mod:`scrapl.transforms.jtfs.path`).  The loss calls it at each step.

        Args:
            x: ``(*batch, N)``; receives the gradient.
            x_target: ``(*batch, N)`` with ``x``'s batch shape and dtype; a constant.
            i, crop_time: as in :meth:`forward_path`.

        Returns:
            ``(S(x), S(x_target))``, each ``(*batch, F_out, T_out)``; the second has no
            graph.
        """
        i = self._check_index(i)
        rows, batch_shape = self._rows(x)
        target, target_shape = self._rows(x_target, "x_target")
        if target_shape != batch_shape:
            raise ValueError(f"x_target must have the shape of x {tuple(x.shape)}, got {tuple(x_target.shape)}")
        if target.device != rows.device:
            raise ValueError(f"x_target is on {target.device} but x is on {rows.device}")
        plan = self._plans.get((i, crop_time)) or self._path_plan(i, crop_time)
        if plan.geo is None:
            return super().forward_path_pair(x, x_target, i, crop_time=crop_time)
        s, s_target = PathPair.apply(rows, target.detach(), plan.geo, self.buffer_pool)
        return s.reshape(*batch_shape, *s.shape[-2:]), s_target.reshape(*batch_shape, *s_target.shape[-2:])

    def _path_rows_unfused(self, xb: Tensor, plan: _PathPlan) -> Tensor:
        """Path coefficients of scaled rows ``(B, N) -> (B, F_out, T)`` when some
        first-order group is not one-sided (no :class:`PathPair`): the scalogram
        spectra kept, then the second order."""
        sp = self._second[plan.n2]
        y2 = self._second_rows(self._u1_hats(self._input_spectrum(xb), self._groups[: sp.n_groups]), sp)
        S = core.freq_scatter_modulus_average(y2, plan.M, plan.A, self.buffer_pool, plan.freq)
        return torch.matmul(plan.P, S) + plan.bias

    def _path_plan(self, i: int, crop_time: bool) -> _PathPlan:
        # cached for every later call: normal tensors even when built under
        # torch.inference_mode() (an inference tensor would poison grad-mode calls)
        with torch.inference_mode(False), torch.no_grad():
            return self._build_path_plan(i, crop_time)

    def _build_path_plan(self, i: int, crop_time: bool) -> _PathPlan:
        n2, nf = self._paths[i]
        sp = self._second[n2]
        groups = self._groups[: sp.n_groups]
        specs, tensors = [], []
        for gi, g in enumerate(groups):
            specs.append((g.win_start, g.L, sp.segments[gi]))
            tensors += [getattr(self, f"_g{g.k}_idx"), getattr(self, f"_g{g.k}_h2"),
                        getattr(self, f"_s{n2}_coef{gi}")]
        fused = all(g.one_sided for g in groups)
        cols = self._cols(crop_time)
        r0, r1 = sp.row_start[nf], sp.row_stop[nf]
        M = getattr(self, f"_s{n2}_M")[2 * r0: 2 * r1]
        A = getattr(self, f"_A{sp.j2}")[:, cols]
        freq = core.freq_operands(M, A, *self._averaging_t(sp.j2, crop_time))
        width = sp.T2 if not sp.folded else getattr(self, f"_s{n2}_coef0").shape[0]
        fold = getattr(self, f"_s{n2}_fold") if sp.folded else None
        P, bias = getattr(self, f"_p{i}_P"), getattr(self, f"_p{i}_bias")[:, cols]
        geo = PathGeometry(pad_left=self.pad_left, pad_right=self.pad_right, n_pad=self.N_pad,
                           ext_extra=self._ext_extra, specs=tuple(specs), tensors=tuple(tensors), width=width,
                           T2=sp.T2, fold=fold, M=M, A=A, freq=freq, P=P, bias=bias) if fused else None
        plan = _PathPlan(n2=n2, M=M, A=A, P=P, bias=bias, freq=freq, geo=geo)
        self._plans[(i, crop_time)] = plan
        return plan

    def _averaging_t(self, j2: int, crop_time: bool) -> tuple[Tensor, Tensor | None]:
        """``A.t()`` of the time averaging at ``j2`` (the crop's columns), contiguous,
        and its :func:`core.averaging_band`, shared by the paths of that ``j2`` (in the
        plan cache)."""
        key = ("AT", j2, crop_time)
        hit = self._plans.get(key)
        if hit is None:
            with torch.inference_mode(False), torch.no_grad():  # cached: never inference tensors
                AT = getattr(self, f"_A{j2}")[:, self._cols(crop_time)].t().contiguous()
                hit = self._plans[key] = (AT, core.averaging_band(AT))
        return hit

    def _all_paths(self, u1_hats: list[list[Tensor]], crop_time: bool) -> Tensor:
        outs = []
        cols = self._cols(crop_time)
        for n2, sp in self._second.items():
            y2 = self._second_rows(u1_hats, sp)
            M, A = getattr(self, f"_s{n2}_M"), getattr(self, f"_A{sp.j2}")[:, cols]
            S = core.freq_scatter_modulus_average(y2, M, A, self.buffer_pool,
                                                  core.freq_operands(M, A, *self._averaging_t(sp.j2, crop_time)))
            for nf, (r0, r1) in enumerate(zip(sp.row_start, sp.row_stop)):
                outs.append(self._finish_path(S[:, r0:r1], self._path_index[(n2, nf)], cols))
        return torch.stack(outs, dim=1)

    @run_eagerly
    def forward(self, x: Tensor, *, crop_time: bool = True) -> Tensor:
        """All paths: ``(*batch, n_paths, F_out, T_out)``, path ``i`` equal to
        ``forward_path(x, i, crop_time=crop_time)``; the scalogram is computed once."""
        xb, batch_shape, scale = self._prepare(x)
        x_hat = self._input_spectrum(xb)
        max_groups = max(sp.n_groups for sp in self._second.values())
        u1_hats = self._u1_hats(x_hat, self._groups[:max_groups])
        out = self._all_paths(u1_hats, crop_time)
        return rescale(out, scale).reshape(*batch_shape, *out.shape[-3:])

    @run_eagerly
    def forward_first_order(self, x: Tensor, *, crop_time: bool = True) -> Tensor:
        """The ``n_first = K + 1`` first-order joint channels ``(n_fr,)``:
        ``(*batch, n_first, F_out, T_out)``."""
        xb, batch_shape, scale = self._prepare(x)
        x_hat = self._input_spectrum(xb)
        u1_hats = self._u1_hats(x_hat, self._groups)
        out = self._first_order(u1_hats, self._cols(crop_time))
        return rescale(out, scale).reshape(*batch_shape, *out.shape[-3:])

    def _first_order(self, u1_hats: list[list[Tensor]], cols: slice) -> Tensor:
        S1 = torch.cat([core.first_order_time_average(u, getattr(self, f"_g{g.k}_phi_idx"),
                                                      getattr(self, f"_g{g.k}_phi_coef"))
                        for chunks, g in zip(u1_hats, self._groups) for u in chunks], dim=1)  # (B, N1, T_s)
        S1 = S1[:, :, cols]
        Y = torch.matmul(self._first_M, S1)  # (B, 2R, T)
        B, twoR, Tc = Y.shape
        U = core.planar_modulus(Y.view(B, twoR // 2, 2, Tc), 2)
        outs = [torch.matmul(getattr(self, f"_first_P{nf}"), U[:, r0:r1])
                for nf, (r0, r1) in enumerate(self._first_rows)]
        return torch.stack(outs, dim=1)

    @run_eagerly
    def forward_full(self, x: Tensor, *, crop_time: bool = True) -> Tensor:
        """The complete joint output ``(*batch, n_first + n_paths, F_out,
        T_out)``: first-order channels ``(n_fr,)``, ``n_fr = 0..K``, then all paths."""
        xb, batch_shape, scale = self._prepare(x)
        x_hat = self._input_spectrum(xb)
        u1_hats = self._u1_hats(x_hat, self._groups)
        out = torch.cat([self._first_order(u1_hats, self._cols(crop_time)), self._all_paths(u1_hats, crop_time)],
                        dim=1)
        return rescale(out, scale).reshape(*batch_shape, *out.shape[-3:])
