"""``ImageScattering``: second-order 2-D Morlet scattering as a SCRAPL transform.

It computes Kymatio 0.3.0's ``Scattering2D(J, (M, N), L, max_order=2)`` and splits
its second-order channels into SCRAPL paths: path ``i`` is Kymatio's ``i``-th
second-order channel ``(j1, theta1, j2, theta2)`` (``n1 = j1 * L + theta1`` outer,
``n2 = j2 * L + theta2`` inner, ``j1 < j2``).
"""

from __future__ import annotations

import operator
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from scrapl import checks
from scrapl.interfaces import PathInfo, ScatteringTransform
from scrapl.transforms.scattering2d import core
from scrapl.transforms.scattering2d.config import Scattering2DConfig, max_J
from scrapl.transforms.scattering2d.filters import build_filterbank, wavelet_angle, wavelet_sigma, wavelet_xi

__all__ = ["ImageScattering"]



class ImageScattering(ScatteringTransform):
    """Second-order 2-D scattering (Kymatio 0.3.0 ``Scattering2D``) whose SCRAPL paths
    are the second-order channels ``(j1, theta1, j2, theta2)``.

    Build it from a :class:`Scattering2DConfig` or from the same keywords::

        >>> import torch
        >>> from scrapl.transforms.scattering2d import ImageScattering
        >>> S = ImageScattering(shape=(32, 48), J=2, L=4)
        >>> S.n_paths, S.paths[0]
        (16, (0, 0, 1, 0))
        >>> x = torch.randn(2, 3, 32, 48)          # (batch, channels, height, width)
        >>> S.forward_path(x, 0).shape            # (*batch, height / 2**J, width / 2**J)
        torch.Size([2, 3, 8, 12])
        >>> S(x).shape                            # (*batch, n_paths, ...)
        torch.Size([2, 3, 16, 8, 12])
        >>> S.forward_full(x).shape               # Kymatio's output, orders 0-2
        torch.Size([2, 3, 25, 8, 12])

    Inputs are ``(height, width)`` images with any leading axes (``(batch, channels,
    height, width)`` for the loss), float32 or float64.  Filters are registered
    buffers (non-persistent: a function of the config) stored in float32, Kymatio's
    precision; a float64 input uses them promoted to float64.  ``.to(device)`` moves
    them.

    One path (``forward_path``) applies one first-order wavelet, one second-order
    wavelet and one low-pass: six 2-D FFTs, at most three at full resolution.
    ``forward`` and ``forward_full`` compute each first-order scale's ``L`` wavelets
    in one batched FFT and each second-order block ``(j1, j2)`` (``L x L`` paths) in
    one batched FFT.

    Attributes:
        config: the validated :class:`Scattering2DConfig`.
        shape: ``(M, N)`` image size; ``signal_shape`` the same tuple (what the loss
            checks); ``n_samples = M * N`` pixels.
        J, L: scales and orientations.
        padding: :class:`~scrapl.transforms.scattering2d.filters.Padding2D`.
        out_shape: ``(M_out, N_out)`` output size (cropped, Kymatio's);
            ``out_shape_padded`` before the one-pixel crop.
    """

    def __init__(self, config: Optional[Scattering2DConfig] = None, /, **kwargs: Any) -> None:
        super().__init__()
        self.config = config = Scattering2DConfig.from_call(config, kwargs)
        M, N = config.shape
        self.shape = (M, N)
        self.n_samples = M * N
        self.J, self.L = config.J, config.L
        J, L = self.J, self.L
        bank = build_filterbank(M, N, J, L)
        self.padding = pad = bank.padding
        self.out_shape = (pad.out_rows, pad.out_cols)
        self.out_shape_padded = (pad.out_rows_padded, pad.out_cols_padded)
        self._check_finite = config.check_finite

        def buf(name: str, arr: np.ndarray) -> None:
            self.register_buffer(name, torch.tensor(arr, dtype=torch.float32), persistent=False)  # a copy

        for r, arr in enumerate(bank.phi_levels):
            buf(f"phi_{r}", arr)
        # level 0 of every wavelet n = j * L + theta; level r >= 1 of the wavelets j > r
        # (the second-order filters applied after a first-order scale j1 = r)
        buf("psi_0", np.stack([levels[0] for levels in bank.psi_levels]))
        for r in range(1, J - 1):
            buf(f"psi_{r}", np.stack([bank.psi_levels[n][r] for n in range((r + 1) * L, J * L)]))

        self._paths: list[tuple[int, int, int, int]] = [(p.j1, p.theta1, p.j2, p.theta2) for p in bank.paths]
        index_of = {key: i for i, key in enumerate(self._paths)}
        order = [index_of[(j1, t1, j2, t2)]
                 for j1 in range(J - 1) for j2 in range(j1 + 1, J) for t1 in range(L) for t2 in range(L)]
        if sorted(order) != list(range(len(self._paths))):  # bug guard, not input validation
            raise RuntimeError("second-order blocks do not cover every path exactly once")
        self.register_buffer("_block_inverse", torch.argsort(torch.tensor(order, dtype=torch.long)), persistent=False)

        def deg(theta: int) -> float:
            return float(np.degrees(wavelet_angle(theta, L)))

        self._infos = [
            PathInfo(
                index=i,
                key=key,
                label=(f"j1={j1} ({2**j1} px) theta1={t1} ({deg(t1):g} deg) "
                       f"j2={j2} ({2**j2} px) theta2={t2} ({deg(t2):g} deg)"),
                temporal_rate=None,
                freq_scale=None,
                spin=None,
                extra={
                    "j1": j1, "theta1": t1, "j2": j2, "theta2": t2,
                    "n1": j1 * L + t1, "n2": j2 * L + t2,
                    "scale1_px": float(2**j1), "scale2_px": float(2**j2),
                    "angle1_deg": deg(t1), "angle2_deg": deg(t2),
                    "sigma1_px": wavelet_sigma(j1), "sigma2_px": wavelet_sigma(j2),
                    "xi1": wavelet_xi(j1) / (2 * np.pi), "xi2": wavelet_xi(j2) / (2 * np.pi),
                },
            )
            for i, key in enumerate(self._paths)
            for (j1, t1, j2, t2) in (key,)
        ]

    # ------------------------------------------------------------------ contract
    @property
    def signal_shape(self) -> tuple[int, int]:
        """``(height, width)``: the loss takes ``(batch, channels, height, width)``."""
        return self.shape

    @property
    def paths(self) -> list[tuple[int, int, int, int]]:
        """Path keys ``(j1, theta1, j2, theta2)`` in Kymatio's second-order order."""
        return list(self._paths)

    @property
    def path_infos(self) -> list[PathInfo]:
        """One :class:`PathInfo` per path.  ``extra`` holds ``j1, theta1, j2, theta2,
        n1, n2``, the scales ``scale1_px = 2**j1``, ``scale2_px`` (pixels), the
        orientations ``angle1_deg``, ``angle2_deg`` (degrees, from the row axis towards
        the column axis), the envelope widths ``sigma1_px``, ``sigma2_px`` and the
        centre frequencies ``xi1``, ``xi2`` (cycles per pixel).  ``temporal_rate``,
        ``freq_scale`` and ``spin`` are ``None`` (no time axis)."""
        return list(self._infos)

    @property
    def n_first_order(self) -> int:
        """Number of first-order channels ``J * L``."""
        return self.J * self.L

    def extra_repr(self) -> str:
        return f"shape={self.shape}, J={self.J}, L={self.L}, n_paths={self.n_paths}, out_shape={self.out_shape}"

    # ------------------------------------------------------------------ helpers
    def _prepare(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Validate ``x`` and flatten it to ``(B, M, N)``; returns it with the batch shape."""
        checks.check_transform_input(x, self.psi_0, " (convert integer images with x.float())")
        M, N = self.shape
        if x.ndim < 2:
            raise ValueError(f"x must have at least 2 dimensions (..., height={M}, width={N}), got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(
                f"x must have shape (..., height, width) with (height, width) = shape = {self.shape}, "
                f"got {tuple(x.shape)}"
            )
        if self._check_finite and not checks.inputs_checked():  # the loss checked it already
            checks.require_finite(x)
        batch = tuple(x.shape[:-2])
        return x.reshape(-1, M, N), batch

    @staticmethod
    def _filt(t: Tensor, dtype: torch.dtype) -> Tensor:
        return t if t.dtype == dtype else t.to(dtype)

    def _spectrum(self, x2: Tensor) -> Tensor:
        p = self.padding
        return core.fft2_real(core.pad_reflect_2d(x2.contiguous(), p.top, p.bottom, p.left, p.right))

    def _phi(self, r: int) -> Tensor:
        return getattr(self, f"phi_{r}")

    def _psi2(self, j1: int, j2: int) -> Tensor:
        """The ``L`` wavelets of scale ``j2`` at level ``j1`` (``j1 < j2``): ``(L, M1, N1)``."""
        L = self.L
        if j1 == 0:
            return self.psi_0[j2 * L : (j2 + 1) * L]
        return getattr(self, f"psi_{j1}")[(j2 - j1 - 1) * L : (j2 - j1) * L]

    def _crop(self, s: Tensor, crop_time: bool) -> Tensor:
        return core.unpad(s) if crop_time else s

    def _index(self, i: Any) -> int:
        try:
            if isinstance(i, bool):
                raise TypeError
            idx = operator.index(i)
        except TypeError:
            raise TypeError(f"path index i must be an integer, got {i!r}") from None
        if not 0 <= idx < self.n_paths:
            raise ValueError(f"path index i must be in [0, {self.n_paths}), got {idx}")
        return idx

    # ------------------------------------------------------------------ forward
    def forward_path(self, x: Tensor, i: int, *, crop_time: bool = True) -> Tensor:
        """Coefficients of path ``i = (j1, theta1, j2, theta2)``:
        ``||x * psi[j1, theta1]| * psi[j2, theta2]| * phi``, decimated by ``2**J``.

        Only the two wavelets of the path and the low-pass are applied.

        Args:
            x: ``(*batch, height, width)`` float32/float64.
            i: path index in ``[0, n_paths)``.
            crop_time: crop one output pixel on each side as Kymatio does
                (:attr:`out_shape`); ``False`` keeps :attr:`out_shape_padded` (the
                name is the loss's, shared with the audio transforms).

        Returns:
            ``(*batch, M_out, N_out)``, dtype of ``x``.
        """
        idx = self._index(i)
        x2, batch = self._prepare(x)
        dt = x2.dtype
        J, L = self.J, self.L
        j1, t1, j2, t2 = self._paths[idx]
        x_hat = self._spectrum(x2)
        u1 = core.wavelet_modulus_2d(x_hat, self._filt(self.psi_0[j1 * L + t1], dt), j1)
        u2 = core.wavelet_modulus_2d(core.fft2_real(u1), self._filt(self._psi2(j1, j2)[t2], dt), j2 - j1)
        s2 = self._crop(core.lowpass_2d(u2, self._filt(self._phi(j2), dt), J - j2), crop_time)
        return s2.reshape(*batch, *s2.shape[-2:])

    def _orders(self, x2: Tensor, *, first: bool) -> tuple[Optional[Tensor], Optional[Tensor], Tensor]:
        """Uncropped ``(S0 (B, Mo, No), S1 (B, J*L, Mo, No), S2 (B, P, Mo, No))``;
        S0/S1 only if ``first``."""
        dt = x2.dtype
        J, L = self.J, self.L
        x_hat = self._spectrum(x2)
        s0 = core.lowpass_spectrum_2d(x_hat, self._filt(self._phi(0), dt), J) if first else None
        s1_parts: list[Tensor] = []
        s2_parts: list[Tensor] = []
        B = x_hat.shape[0]
        for j1 in range(J if first else J - 1):
            psi1 = self._filt(self.psi_0[j1 * L : (j1 + 1) * L], dt)
            u1 = core.modulus(torch.fft.ifft2(core.filter_bank_subsample(x_hat, psi1, j1)))
            u1_hat = core.fft2_real(u1)  # (B, L, M1, N1)
            if first:
                s1_parts.append(core.lowpass_spectrum_2d(u1_hat, self._filt(self._phi(j1), dt), J - j1))
            u1_flat = u1_hat.reshape(B * L, *u1_hat.shape[-2:])
            for j2 in range(j1 + 1, J):
                psi2 = self._filt(self._psi2(j1, j2), dt)
                u2 = core.modulus(torch.fft.ifft2(core.filter_bank_subsample(u1_flat, psi2, j2 - j1)))
                s2 = core.lowpass_2d(u2, self._filt(self._phi(j2), dt), J - j2)  # (B * L, L, Mo, No)
                s2_parts.append(s2.reshape(B, L * L, *s2.shape[-2:]))
        s2_all = torch.cat(s2_parts, dim=1).index_select(1, self._block_inverse)
        s1 = torch.cat(s1_parts, dim=1) if first else None
        return s0, s1, s2_all

    def forward(self, x: Tensor, *, crop_time: bool = True) -> Tensor:
        """All paths, equal path by path to :meth:`forward_path`.

        Args:
            x: ``(*batch, height, width)`` float32/float64.
            crop_time: as in :meth:`forward_path`.

        Returns:
            ``(*batch, n_paths, M_out, N_out)``.
        """
        x2, batch = self._prepare(x)
        _, _, s2 = self._orders(x2, first=False)
        s2 = self._crop(s2, crop_time)
        return s2.reshape(*batch, self.n_paths, *s2.shape[-2:])

    def forward_full(self, x: Tensor, *, crop_time: bool = True) -> Tensor:
        """Kymatio's full ``Scattering2D`` output: the zeroth order, the ``J * L``
        first-order channels (``n1 = j1 * L + theta1``), then the second-order
        channels (the paths), in :meth:`meta` order.

        Args:
            x: ``(*batch, height, width)`` float32/float64.
            crop_time: as in :meth:`forward_path`.

        Returns:
            ``(*batch, 1 + J*L + n_paths, M_out, N_out)``.
        """
        x2, batch = self._prepare(x)
        s0, s1, s2 = self._orders(x2, first=True)
        if s0 is None or s1 is None:  # cannot happen with first=True
            raise RuntimeError("first-order coefficients were not computed")
        out = self._crop(torch.cat([s0[:, None], s1, s2], dim=1), crop_time)
        return out.reshape(*batch, out.shape[1], *out.shape[-2:])

    def meta(self) -> dict[str, Any]:
        """Channel descriptions of :meth:`forward_full` (Kymatio's list output keys).

        Returns:
            ``{'order': (C,) int tensor, 'j', 'theta', 'n': lists of tuples ((), (j1,),
            (j1, j2) ...)}``.
        """
        L = self.L
        order, js, thetas, ns = [0], [()], [()], [()]
        for n1 in range(self.J * L):
            order.append(1)
            js.append((n1 // L,))
            thetas.append((n1 % L,))
            ns.append((n1,))
        for j1, t1, j2, t2 in self._paths:
            order.append(2)
            js.append((j1, j2))
            thetas.append((t1, t2))
            ns.append((j1 * L + t1, j2 * L + t2))
        return {"order": torch.tensor(order), "j": js, "theta": thetas, "n": ns}

    @staticmethod
    def max_J(shape: tuple[int, int]) -> int:
        """Largest ``J`` allowed for an image of size ``shape``."""
        return max_J(*shape)
