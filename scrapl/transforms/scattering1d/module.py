"""``TimeScattering``: second-order time scattering as a SCRAPL transform.

It computes Kymatio 0.3.0's ``Scattering1D(J, shape, Q, T, max_order=2)`` and splits
its second-order coefficients into SCRAPL paths: path ``i`` is Kymatio's ``i``-th
second-order channel ``(n1, n2)`` (``n1`` outer, ``n2`` inner, ``j1 < j2``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from scrapl import checks
from scrapl.interfaces import PathInfo, ScatteringTransform
from scrapl.transforms.scattering1d import core
from scrapl.transforms.scattering1d.config import Scattering1DConfig
from scrapl.transforms.scattering1d.filters import build_filterbank
from scrapl.transforms.scale import normalise, rescale

__all__ = ["TimeScattering"]



class TimeScattering(ScatteringTransform):
    """Second-order time scattering (Kymatio 0.3.0 ``Scattering1D``) whose SCRAPL paths
    are the second-order channels ``(n1, n2)``.

    Build it from a :class:`Scattering1DConfig` or from the same keywords::

        >>> import torch
        >>> from scrapl.transforms.scattering1d import TimeScattering
        >>> S = TimeScattering(shape=4096, J=6, Q=8)
        >>> S.n_paths, S.paths[0]
        (87, (0, 3))
        >>> x = torch.randn(2, 4096)
        >>> S.forward_path(x, 0).shape          # (*batch, 1, T_out)
        torch.Size([2, 1, 64])
        >>> S(x).shape                          # (*batch, n_paths, 1, T_out)
        torch.Size([2, 87, 1, 64])
        >>> S.forward_full(x).shape             # Kymatio's array output, orders 0-2
        torch.Size([2, 126, 64])

    Inputs are ``(batch, samples)``, ``(batch, channels, samples)`` (any leading
    axes) of float32 or float64.  Filters are registered buffers (non-persistent:
    they are a function of the config) stored in float32, Kymatio's precision; a
    float64 input uses them promoted to float64.  ``.to(device)`` moves them.

    One path (``forward_path``) computes only its own first-order wavelet ``psi1[n1]``,
    one second-order wavelet and one low-pass: about six FFTs.  ``forward`` and
    ``forward_full`` compute every first-order wavelet once, batched by decimation
    factor, and every second-order block ``(n1 group, n2 group)`` in one batched FFT.

    Attributes:
        config: the validated :class:`Scattering1DConfig`.
        n_samples: signal length N.
        J, Q, T, log2_T, oversampling: parameters (``Q = (Q1, Q2)``, ``T`` resolved).
        n_padded, pad_left, pad_right: reflect padding of the time axis.
        xi1, sigma1, j1 / xi2, sigma2, j2: first/second-order wavelet centre
            frequencies and bandwidths (cycles/sample) and dyadic scales.
        padding: :class:`~scrapl.transforms.scattering1d.filters.PaddingPlan` (crop
            indices at every decimation).
        n_frames: output frames ``T_out`` (cropped); ``n_frames_padded`` uncropped.
    """

    def __init__(self, config: Optional[Scattering1DConfig] = None, /, **kwargs: Any) -> None:
        super().__init__()
        self.config = config = Scattering1DConfig.from_call(config, kwargs)
        self.n_samples = config.n_samples
        bank = build_filterbank(config.n_samples, config.J, config.q_pair, config.T, config.oversampling)
        self.padding = bank.padding  # PaddingPlan (the float64 filter arrays are not kept)
        self.J = bank.J
        self.Q = (bank.Q1, bank.Q2)
        self.T = bank.T
        self.log2_T = bank.log2_T
        self.oversampling = bank.oversampling
        pad = bank.padding
        self.n_padded = pad.n_padded
        self.pad_left, self.pad_right = pad.pad_left, pad.pad_right
        self._log2_out = bank.log2_out
        self._i0 = pad.ind_start[bank.log2_out]
        self._i1 = pad.ind_end[bank.log2_out]
        self.n_frames = self._i1 - self._i0
        self.n_frames_padded = pad.n_padded // 2**bank.log2_out
        self.xi1, self.sigma1, self.j1 = bank.psi1.xi, bank.psi1.sigma, bank.psi1.j
        self.xi2, self.sigma2, self.j2 = bank.psi2.xi, bank.psi2.sigma, bank.psi2.j
        self._check_finite = config.check_finite

        self._paths: list[tuple[int, int]] = [(p.n1, p.n2) for p in bank.paths]
        self._plans = bank.paths

        # --- buffers (float32, as Kymatio casts them) -----------------------------
        def buf(name: str, arr: np.ndarray) -> None:
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32), persistent=False)

        for level, arr in enumerate(bank.phi_levels):
            buf(f"phi_{level}", arr)
        buf("psi1", bank.psi1_f)
        self._psi2_first: dict[int, int] = {}
        for level, (first, arr) in bank.psi2_levels.items():
            buf(f"psi2_{level}", arr)
            self._psi2_first[level] = first

        # --- vectorisation plan ---------------------------------------------------
        # first-order groups: contiguous n1 ranges sharing k1 (j1, hence k1, is
        # non-decreasing in n1)
        self._k1_groups: list[tuple[int, int, int]] = []  # (k1, n1_start, n1_stop)
        start = 0
        k1s = bank.k1
        for n1 in range(1, len(k1s) + 1):
            if n1 == len(k1s) or k1s[n1] != k1s[start]:
                self._k1_groups.append((k1s[start], start, n1))
                start = n1
        # second-order blocks per k1 group: (n1 count m from the group start, n2 range
        # sharing j2 with j2 > j1 for the m first n1 of the group, k2, kT, path indices)
        index_of = {key: i for i, key in enumerate(self._paths)}
        j2_groups: list[tuple[int, int, int]] = []  # (j2, n2_start, n2_stop)
        start = 0
        for n2 in range(1, len(self.j2) + 1):
            if n2 == len(self.j2) or self.j2[n2] != self.j2[start]:
                j2_groups.append((self.j2[start], start, n2))
                start = n2
        plan_of = {(p.n1, p.n2): p for p in bank.paths}
        self._blocks: list[list[tuple[int, int, int, int, int, list[int]]]] = []
        order: list[int] = []
        for k1, a, b in self._k1_groups:
            blocks = []
            for j2, c, d in j2_groups:
                m = sum(1 for n1 in range(a, b) if self.j1[n1] < j2)
                if m == 0:
                    continue
                # all (n1, n2) in the block share k2 and kT (k1 and j2 are shared)
                p0 = plan_of[(a, c)]
                idx = [index_of[(n1, n2)] for n1 in range(a, a + m) for n2 in range(c, d)]
                blocks.append((m, c, d, p0.k2, p0.kT, idx))
                order.extend(idx)
            self._blocks.append(blocks)
        if sorted(order) != list(range(len(self._paths))):  # bug guard, not input validation
            raise RuntimeError("second-order blocks do not cover every path exactly once")
        self.register_buffer("_block_inverse", torch.argsort(torch.tensor(order, dtype=torch.long)), persistent=False)

        self._infos = [
            PathInfo(
                index=i,
                key=(n1, n2),
                label=f"n1={n1} ({self.xi1[n1]:.2g} c/s) n2={n2} ({self.xi2[n2]:.2g} c/s)",
                temporal_rate=float(self.xi2[n2]),
                freq_scale=None,
                spin=None,
                extra={
                    "n1": n1,
                    "n2": n2,
                    "xi1": float(self.xi1[n1]),
                    "xi2": float(self.xi2[n2]),
                    "j1": int(self.j1[n1]),
                    "j2": int(self.j2[n2]),
                    "sigma1": float(self.sigma1[n1]),
                    "sigma2": float(self.sigma2[n2]),
                },
            )
            for i, (n1, n2) in enumerate(self._paths)
        ]

    # ------------------------------------------------------------------ contract
    @property
    def paths(self) -> list[tuple[int, int]]:
        """Path keys ``(n1, n2)`` in path-index order (Kymatio's second-order order)."""
        return list(self._paths)

    @property
    def path_infos(self) -> list[PathInfo]:
        """One :class:`PathInfo` per path: ``temporal_rate`` is ``xi2`` (cycles/sample);
        ``extra`` holds ``n1, n2, xi1, xi2, j1, j2, sigma1, sigma2``."""
        return list(self._infos)

    @property
    def n_first_order(self) -> int:
        """Number of first-order wavelets ``N1``."""
        return len(self.xi1)

    def extra_repr(self) -> str:
        return (
            f"shape={self.n_samples}, J={self.J}, Q={self.Q}, T={self.T}, oversampling={self.oversampling}, "
            f"n_paths={self.n_paths}, n_frames={self.n_frames}"
        )

    # ------------------------------------------------------------------ helpers
    def _prepare(self, x: Tensor) -> tuple[Tensor, tuple[int, ...], Tensor]:
        """Validate ``x`` and flatten it to ``(B, N)``, divided by a power of two per
        row (see :mod:`scrapl.transforms.scale`); returns it with the batch shape and
        the ``(B,)`` scales to multiply the output by."""
        checks.check_transform_input(x, self.psi1)
        if x.ndim < 1 or x.shape[-1] != self.n_samples:
            raise ValueError(
                f"x must have shape (batch, samples) or (batch, channels, samples) with "
                f"samples={self.n_samples}, got {tuple(x.shape)}"
            )
        if self._check_finite and not checks.inputs_checked():
            checks.require_finite(x)
        batch = tuple(x.shape[:-1])
        x2, scale = normalise(x.reshape(-1, self.n_samples))
        return x2, batch, scale

    def _filt(self, t: Tensor, dtype: torch.dtype) -> Tensor:
        return t if t.dtype == dtype else t.to(dtype)

    def _spectrum(self, x2: Tensor) -> Tensor:
        return core.fft_real(core.pad_reflect(x2.contiguous(), self.pad_left, self.pad_right))

    def _psi2(self, level: int, n2_start: int, n2_stop: int) -> Tensor:
        first = self._psi2_first[level]
        bank: Tensor = getattr(self, f"psi2_{level}")
        return bank[n2_start - first : n2_stop - first]

    def _phi(self, level: int) -> Tensor:
        return getattr(self, f"phi_{level}")

    def _crop(self, s: Tensor, crop_time: bool) -> Tensor:
        return s[..., self._i0 : self._i1] if crop_time else s

    def _index(self, i: Any) -> int:
        if checks.inputs_checked():  # the loss validated it
            return int(i)
        return checks.path_index(i, self.n_paths, "path index i")

    # ------------------------------------------------------------------ forward
    def forward_path(self, x: Tensor, i: int, *, crop_time: bool = True) -> Tensor:
        """Coefficients of path ``i = (n1, n2)``: ``||x * psi1[n1]| * psi2[n2]| * phi``.

        Only ``psi1[n1]`` is applied at the first order.

        Args:
            x: ``(*batch, samples)`` float32/float64.
            i: path index in ``[0, n_paths)``.
            crop_time: crop to the ``n_frames`` frames of the signal (Kymatio's
                output); ``False`` keeps the ``n_frames_padded`` frames of the padded
                signal.

        Returns:
            ``(*batch, 1, n_frames)`` (or ``n_frames_padded``), dtype of ``x``.
        """
        idx = self._index(i)
        x2, batch, scale = self._prepare(x)
        dt = x2.dtype
        plan = self._plans[idx]
        x_hat = self._spectrum(x2)
        u1 = core.wavelet_modulus(x_hat, self._filt(self.psi1[plan.n1], dt), plan.k1)
        u2 = core.wavelet_modulus(core.fft_real(u1), self._filt(self._psi2(plan.k1, plan.n2, plan.n2 + 1)[0], dt), plan.k2)
        s2 = core.lowpass(u2, self._filt(self._phi(plan.k1 + plan.k2), dt), plan.kT)
        s2 = self._crop(s2, crop_time)
        return rescale(s2, scale).reshape(*batch, 1, s2.shape[-1])

    def _orders(self, x2: Tensor, *, first: bool) -> tuple[Optional[Tensor], Optional[Tensor], Tensor]:
        """Uncropped ``(S0 (B, L), S1 (B, N1, L), S2 (B, P, L))``; S0/S1 only if ``first``."""
        dt = x2.dtype
        x_hat = self._spectrum(x2)
        s0 = s1 = None
        if first:
            s0 = core.lowpass_spectrum(x_hat, self._filt(self._phi(0), dt), max(self.log2_T - self.oversampling, 0))
        s1_parts: list[Tensor] = []
        s2_parts: list[Tensor] = []
        for (k1, a, b), blocks in zip(self._k1_groups, self._blocks):
            u1 = core.wavelet_modulus(x_hat[:, None, :], self._filt(self.psi1[a:b], dt), k1)  # (B, n, L1)
            u1_hat = core.fft_real(u1)
            if first:
                k1_T = max(self.log2_T - k1 - self.oversampling, 0)
                s1_parts.append(core.lowpass_spectrum(u1_hat, self._filt(self._phi(k1), dt), k1_T))
            for m, c, d, k2, kT, _ in blocks:
                psi2 = self._filt(self._psi2(k1, c, d), dt)  # (n2, L1)
                u2 = core.wavelet_modulus(u1_hat[:, :m, None, :], psi2, k2)  # (B, m, n2, L2)
                s2 = core.lowpass(u2, self._filt(self._phi(k1 + k2), dt), kT)
                s2_parts.append(s2.reshape(s2.shape[0], -1, s2.shape[-1]))
        s2_all = torch.cat(s2_parts, dim=1).index_select(1, self._block_inverse)
        if first:
            s1 = torch.cat(s1_parts, dim=1)
        return s0, s1, s2_all

    def forward(self, x: Tensor, *, crop_time: bool = True) -> Tensor:
        """All paths, equal path by path to :meth:`forward_path`.

        Args:
            x: ``(*batch, samples)`` float32/float64.
            crop_time: as in :meth:`forward_path`.

        Returns:
            ``(*batch, n_paths, 1, n_frames)``.
        """
        x2, batch, scale = self._prepare(x)
        _, _, s2 = self._orders(x2, first=False)
        s2 = self._crop(s2, crop_time)
        return rescale(s2, scale).reshape(*batch, self.n_paths, 1, s2.shape[-1])

    def forward_full(self, x: Tensor, *, crop_time: bool = True) -> Tensor:
        """Kymatio's full ``Scattering1D`` output (``out_type='array'``): the zeroth
        order, the ``N1`` first-order channels, then the second-order channels (the
        paths), in :meth:`meta` order.

        Args:
            x: ``(*batch, samples)`` float32/float64.
            crop_time: as in :meth:`forward_path`.

        Returns:
            ``(*batch, 1 + N1 + n_paths, n_frames)``.
        """
        x2, batch, scale = self._prepare(x)
        s0, s1, s2 = self._orders(x2, first=True)
        if s0 is None or s1 is None:  # cannot happen with first=True
            raise RuntimeError("first-order coefficients were not computed")
        out = torch.cat([s0[:, None, :], s1, s2], dim=1)
        out = self._crop(out, crop_time)
        return rescale(out, scale).reshape(*batch, out.shape[1], out.shape[-1])

    def meta(self) -> dict[str, Any]:
        """Channel descriptions of :meth:`forward_full`, like Kymatio's ``meta()``.

        Returns:
            ``{'key': list of tuples (), (n1,), (n1, n2); 'order': (C,) int tensor;
            'xi', 'sigma', 'j', 'n': (C, 2) float64 tensors padded with NaN}``.
        """
        nan = float("nan")
        keys: list[tuple[int, ...]] = [()]
        rows: dict[str, list[tuple[float, float]]] = {f: [(nan, nan)] for f in ("xi", "sigma", "j", "n")}
        order = [0]
        for n1 in range(self.n_first_order):
            keys.append((n1,))
            order.append(1)
            rows["xi"].append((self.xi1[n1], nan))
            rows["sigma"].append((self.sigma1[n1], nan))
            rows["j"].append((float(self.j1[n1]), nan))
            rows["n"].append((float(n1), nan))
        for n1, n2 in self._paths:
            keys.append((n1, n2))
            order.append(2)
            rows["xi"].append((self.xi1[n1], self.xi2[n2]))
            rows["sigma"].append((self.sigma1[n1], self.sigma2[n2]))
            rows["j"].append((float(self.j1[n1]), float(self.j2[n2])))
            rows["n"].append((float(n1), float(n2)))
        out: dict[str, Any] = {"key": keys, "order": torch.tensor(order)}
        for f, r in rows.items():
            out[f] = torch.tensor(r, dtype=torch.float64)
        return out
