"""Tests of the ``scattering2d`` transform plugin against Kymatio 0.3.0 golden data.

The fixtures ``tests/fixtures/scattering2d_*.pt`` come from
``scripts/make_scattering2d_golden.py`` (run with Kymatio 0.3.0 in a scratch
environment); they store the input's seed, and the tests regenerate it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from scrapl.interfaces import PathInfo, ScatteringTransform
from scrapl.transforms.scattering2d import PLUGINS, ImageScattering, Scattering2DConfig, make_scattering2d
from scrapl.transforms.scattering2d import core
from scrapl.transforms.scattering2d.filters import padding_plan

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = ["j3_l8_128x128", "j3_l8_96x150", "j4_l5_72x64", "j2_l4_16x12", "j4_l2_16x24"]
WITH_EXTRAS = ["j4_l5_72x64", "j2_l4_16x12", "j4_l2_16x24"]
RTOL_L2 = 1e-5


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


_cache: dict[str, Any] = {}


def golden(name: str) -> tuple[dict[str, Any], ImageScattering, torch.Tensor]:
    """(fixture, transform, regenerated input)."""
    if name not in _cache:
        data = torch.load(FIXTURES / f"scattering2d_{name}.pt", weights_only=True)
        p = data["params"]
        S = ImageScattering(shape=tuple(p["shape"]), J=p["J"], L=p["L"])
        x = torch.randn(*data["x_shape"], generator=torch.Generator().manual_seed(data["x_seed"]))
        assert float(x.double().sum()) == data["x_sum"], "torch.randn drifted from the fixture's input"
        _cache[name] = (data, S, x)
    return _cache[name]


def tiny(**kw: Any) -> ImageScattering:
    cfg: dict[str, Any] = dict(shape=(16, 12), J=2, L=2)
    cfg.update(kw)
    return ImageScattering(**cfg)


# ------------------------------------------------------------------ golden data
@pytest.mark.parametrize("name", GOLDEN)
def test_sizes_and_keys_match_kymatio(name: str) -> None:
    data, S, _ = golden(name)
    assert (S.padding.M_padded, S.padding.N_padded) == (data["M_padded"], data["N_padded"])
    assert S.out_shape == tuple(data["full"].shape[-2:])
    meta = S.meta()
    keys = data["keys"]
    assert [list(t) for t in meta["j"]] == keys["j"]
    assert [list(t) for t in meta["theta"]] == keys["theta"]
    assert [list(t) for t in meta["n"]] == keys["n"]
    # path order: Kymatio's second-order channels, n1 outer, n2 inner, j1 < j2
    second = [tuple(j) + tuple(t) for j, t in zip(keys["j"], keys["theta"]) if len(j) == 2]
    assert [(j1, j2, t1, t2) for j1, t1, j2, t2 in S.paths] == second
    assert all(j1 < j2 for j1, _, j2, _ in S.paths)
    J, L = S.J, S.L
    assert S.n_paths == L * L * J * (J - 1) // 2 == data["full"].shape[1] - 1 - J * L


@pytest.mark.parametrize("name", WITH_EXTRAS)
def test_filters_match_kymatio(name: str) -> None:
    data, S, _ = golden(name)
    f = data["filters"]
    assert len(f["phi_levels"]) == S.J
    for r, ref in enumerate(f["phi_levels"]):
        torch.testing.assert_close(S._phi(r), ref, rtol=1e-6, atol=1e-7)
    for n, levels in zip(f["psi_n"], f["psi_levels"]):
        j = n // S.L
        torch.testing.assert_close(S.psi_0[n], levels[0], rtol=1e-6, atol=1e-7)
        for r in range(1, len(levels)):
            if j > r:  # only the levels that a second-order path uses are kept
                torch.testing.assert_close(S._psi2(r, j)[n % S.L], levels[r], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", GOLDEN)
def test_forward_full_matches_kymatio(name: str) -> None:
    data, S, x = golden(name)
    assert rel_l2(S.forward_full(x), data["full"]) <= RTOL_L2


@pytest.mark.parametrize("name", GOLDEN)
def test_forward_path_matches_kymatio(name: str) -> None:
    data, S, x = golden(name)
    n0 = 1 + S.n_first_order
    idx = range(S.n_paths) if S.n_paths <= 32 else sorted({0, 1, S.L, S.n_paths // 3, S.n_paths // 2, S.n_paths - 1})
    for i in idx:
        assert rel_l2(S.forward_path(x, i), data["full"][:, n0 + i]) <= RTOL_L2, i


@pytest.mark.parametrize("name", GOLDEN)
def test_forward_is_stack_of_forward_path(name: str) -> None:
    data, S, x = golden(name)
    n0 = 1 + S.n_first_order
    out = S(x)
    assert out.shape == (x.shape[0], S.n_paths, *S.out_shape)
    assert rel_l2(out, data["full"][:, n0:]) <= RTOL_L2
    for i in (0, S.n_paths // 2, S.n_paths - 1):
        torch.testing.assert_close(out[:, i], S.forward_path(x, i), rtol=1e-5, atol=1e-6)


def test_crop_false_keeps_padded_border() -> None:
    data, S, x = golden("j3_l8_96x150")
    padded = S.forward_path(x, 5, crop_time=False)
    assert padded.shape[-2:] == S.out_shape_padded == (S.out_shape[0] + 2, S.out_shape[1] + 2)
    torch.testing.assert_close(padded[..., 1:-1, 1:-1], S.forward_path(x, 5), rtol=0, atol=0)
    torch.testing.assert_close(S(x, crop_time=False)[:, 5], padded)
    assert S.forward_full(x, crop_time=False).shape[-2:] == S.out_shape_padded


@pytest.mark.parametrize("name", WITH_EXTRAS)
def test_gradient_matches_kymatio(name: str) -> None:
    data, S, x = golden(name)
    x = x.clone().requires_grad_(True)
    w = torch.randn(data["full"].shape, generator=torch.Generator().manual_seed(data["grad_weight_seed"]))
    (S.forward_full(x) * w).sum().backward()
    assert rel_l2(x.grad, data["grad"]) <= RTOL_L2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_golden_on_cuda() -> None:
    data, S, x = golden("j3_l8_128x128")
    Sc = ImageScattering(S.config).cuda()
    xc = x.cuda()
    assert rel_l2(Sc.forward_full(xc).cpu(), data["full"]) <= RTOL_L2
    n0 = 1 + S.n_first_order
    for i in (0, S.n_paths // 2, S.n_paths - 1):
        assert rel_l2(Sc.forward_path(xc, i).cpu(), data["full"][:, n0 + i]) <= RTOL_L2
    xg = xc.clone().requires_grad_(True)
    Sc.forward_path(xg, 3).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


# ------------------------------------------------------------------ shapes / dtypes
def test_batch_shapes() -> None:
    S = tiny()
    x = torch.randn(3, 2, 16, 12)
    out = S(x)
    assert out.shape == (3, 2, S.n_paths, *S.out_shape)
    torch.testing.assert_close(out[1, 0], S(x[1, 0][None])[0])
    assert S.forward_path(x, 1).shape == (3, 2, *S.out_shape)
    assert S.forward_full(x).shape == (3, 2, 1 + S.n_first_order + S.n_paths, *S.out_shape)
    assert S.forward_path(x[0, 0], 0).shape == S.out_shape


def test_float64_input() -> None:
    S = tiny()
    x = torch.randn(2, 16, 12, generator=torch.Generator().manual_seed(0))
    y64 = S(x.double())
    assert y64.dtype == torch.float64
    assert rel_l2(S(x), y64) < 1e-5
    S64 = tiny().double()
    torch.testing.assert_close(S64(x.double()), y64)
    assert S64(x).dtype == torch.float32


def test_buffers_are_not_persistent_and_move_with_module() -> None:
    S = tiny()
    assert S.state_dict() == {}
    names = dict(S.named_buffers())
    assert "psi_0" in names and "phi_0" in names
    assert S.to(torch.float64).psi_0.dtype == torch.float64
    # buffers are copies: editing one leaves a new transform (cached filter bank) intact
    S2 = tiny()
    S2.psi_0.zero_()
    assert tiny().psi_0.abs().sum() > 0


def test_is_scattering_transform_with_path_infos() -> None:
    S = tiny(shape=(32, 32), J=3, L=4)
    assert isinstance(S, ScatteringTransform)
    infos = S.path_infos
    assert len(infos) == S.n_paths == len(S.paths) == 48
    for i, (info, key) in enumerate(zip(infos, S.paths)):
        assert isinstance(info, PathInfo)
        j1, t1, j2, t2 = key
        assert info.index == i and info.key == key
        assert info.temporal_rate is None and info.freq_scale is None and info.spin is None
        e = info.extra
        assert (e["j1"], e["theta1"], e["j2"], e["theta2"]) == key
        assert (e["n1"], e["n2"]) == (j1 * 4 + t1, j2 * 4 + t2)
        assert e["scale1_px"] == 2**j1 and e["scale2_px"] == 2**j2
        # Kymatio's orientation (int(L - L/2 - 1) - theta) * pi / L, in degrees
        assert e["angle1_deg"] == pytest.approx((1 - t1) * 45.0) and e["angle2_deg"] == pytest.approx((1 - t2) * 45.0)
        assert e["xi1"] == pytest.approx(3 / 8 / 2**j1) and e["sigma2_px"] == pytest.approx(0.8 * 2**j2)
        assert f"({2**j1} px)" in info.label and "deg" in info.label
    assert infos[0].label == "j1=0 (1 px) theta1=0 (45 deg) j2=1 (2 px) theta2=0 (45 deg)"
    assert S.signal_shape == (32, 32) and S.n_samples == 32 * 32


def test_padding_plan() -> None:
    p = padding_plan(128, 128, 3)
    assert (p.M_padded, p.top, p.bottom, p.out_rows, p.out_rows_padded) == (144, 8, 8, 16, 18)
    p = padding_plan(96, 150, 3)
    assert (p.N_padded, p.left, p.right, p.out_cols) == (160, 5, 5, 18)
    p = padding_plan(16, 24, 4)
    assert (p.M_padded, p.top, p.bottom) == (48, 16, 16)  # pad == height: special case


def test_pad_reflect_special_case() -> None:
    """A pad equal to the image size (2**J == height): reflect by one pixel less, then
    the second and second-to-last rows outside (Kymatio's torch backend)."""
    x = torch.arange(4.0).reshape(1, 4, 1).expand(1, 4, 3).contiguous()
    y = core.pad_reflect_2d(x, 4, 4, 0, 0)
    assert y.shape == (1, 12, 3)
    inner = torch.nn.functional.pad(x[:, None], (0, 0, 3, 3), mode="reflect")[:, 0]
    torch.testing.assert_close(y, torch.cat([inner[:, 1:2], inner, inner[:, -2:-1]], dim=1))


def test_filter_subsample_equals_product_then_subsample() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 16, dtype=torch.complex128, generator=g)
    f = torch.randn(3, 32, 16, dtype=torch.float64, generator=g)
    for k in range(4):
        torch.testing.assert_close(core.filter_subsample(x, f, k), core.subsample_fourier_2d(x * f, k))
        # every image x every filter, by batched matrix products over the folds
        xs = x.reshape(6, 32, 16)
        torch.testing.assert_close(core.filter_bank_subsample(xs, f, k),
                                   core.subsample_fourier_2d(xs[:, None] * f, k))
    # decimating in Fourier is decimating in space
    img = torch.randn(2, 32, 16, dtype=torch.float64, generator=g)
    torch.testing.assert_close(torch.fft.ifft2(core.subsample_fourier_2d(torch.fft.fft2(img), 2)).real,
                               img[:, ::4, ::4])


# ------------------------------------------------------------------ gradients
def test_gradcheck_float64() -> None:
    S = tiny().double()
    x = torch.randn(1, 16, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    for i in range(S.n_paths):
        assert torch.autograd.gradcheck(
            lambda v: S.forward_path(v, i, crop_time=False), (x,), eps=1e-6, atol=1e-6, fast_mode=True
        )
    assert torch.autograd.gradcheck(lambda v: S.forward_full(v), (x,), eps=1e-6, atol=1e-6, fast_mode=True)
    # one path in slow mode (the full Jacobian)
    assert torch.autograd.gradcheck(lambda v: S.forward_path(v, 1), (x,), eps=1e-6, atol=1e-6)


def test_gradgradcheck_float64() -> None:
    """Double backward (Hessian-vector products of the theta-IS warmup)."""
    S = tiny().double()
    x = torch.randn(1, 16, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: S.forward_path(v, 2), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_zero_input_has_zero_gradient() -> None:
    S = tiny()
    x = torch.zeros(1, 16, 12, requires_grad=True)
    S.forward_path(x, 0).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and not x.grad.any()


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(shape=(16, 12), J=4), r"J=4 is too large.*\[2, 3\]"),
        (dict(shape=(128, 64), J=7), r"2\*\*J <= min\(height, width\) = 64"),
        (dict(shape=(16, 12), J=1), "J"),
        (dict(shape=(16, 12), J=2, L=0), "L"),
        (dict(shape=(16, 12), J=2, L=-3), "greater than or equal to 1"),
        (dict(shape=(16,), J=2), "shape"),
        (dict(shape=(16, 12, 3), J=2), "shape"),
        (dict(shape=(16, 0), J=2), "positive integers"),
        (dict(shape=(16.0, 12), J=2), "shape"),
        (dict(shape=16, J=2), "shape"),
        (dict(shape=(16, 12), J=2, max_order=1), "max_order"),
        (dict(shape=(16, 12), J=2, pre_pad=True), "pre_pad"),
    ],
)
def test_config_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Scattering2DConfig(**kw)
    with pytest.raises(ValueError, match=match):  # pydantic's ValidationError is a ValueError
        ImageScattering(**kw)


def test_config_forms_and_round_trip() -> None:
    cfg = Scattering2DConfig(shape=[16, 12], J=2, L=3)
    assert cfg.shape == (16, 12)
    assert Scattering2DConfig.model_validate(cfg.model_dump()) == cfg
    assert Scattering2DConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ValidationError):
        cfg.J = 3  # frozen
    assert Scattering2DConfig(shape=(16, 16), J=4).J == 4  # 2**J == min side is allowed (Kymatio)
    assert ImageScattering.max_J((96, 150)) == 6


def test_constructor_argument_errors() -> None:
    cfg = Scattering2DConfig(shape=(16, 12), J=2, L=2)
    with pytest.raises(TypeError, match="either"):
        ImageScattering(cfg, J=3)
    with pytest.raises(TypeError, match="Scattering2DConfig"):
        ImageScattering({"shape": (16, 12), "J": 2})  # type: ignore[arg-type]
    assert ImageScattering(cfg).paths == tiny().paths


def test_input_errors() -> None:
    S = tiny()
    x = torch.randn(2, 16, 12)
    with pytest.raises(TypeError, match="float32 or float64"):
        S(torch.ones(2, 16, 12, dtype=torch.uint8))
    with pytest.raises(TypeError, match="float32 or float64"):
        S.forward_path(torch.ones(2, 16, 12, dtype=torch.int64), 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        S(torch.ones(2, 16, 12, dtype=torch.complex64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        S([[0.0] * 12] * 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(height, width\) = shape = \(16, 12\)"):
        S(torch.randn(2, 12, 16))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        S.forward_path(torch.randn(12), 0)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        S.forward_path(x, 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        S.forward_path(x, -1)
    with pytest.raises(TypeError, match="integer"):
        S.forward_path(x, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer"):
        S.forward_path(x, True)
    assert S.forward_path(x, torch.tensor(3)).shape == S.forward_path(x, 3).shape
    bad = x.clone()
    bad[0, 5, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        S.forward_path(bad, 0)
    bad[0, 5, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        S(bad)
    with pytest.raises(ValueError, match="transform.to"):
        S(torch.empty(2, 16, 12, device="meta"))
    lax = tiny(check_finite=False)
    assert torch.isnan(lax.forward_path(torch.full((1, 16, 12), float("nan")), 0)).all()


# ------------------------------------------------------------------ plugin spec
def test_plugin_spec() -> None:
    (spec,) = PLUGINS
    assert (spec.kind, spec.name, spec.config_cls) == ("transform", "scattering2d", Scattering2DConfig)
    S = spec.factory(Scattering2DConfig(shape=(16, 12), J=2, L=2))
    assert isinstance(S, ImageScattering) and S.n_paths == 4
    made = make_scattering2d({"name": "scattering2d", "shape": [16, 12], "J": 2})  # type: ignore[arg-type]
    assert made.signal_shape == (16, 12) and made.n_paths == 64
    assert "n_paths=4" in repr(S)


# ------------------------------------------------------------------ docs
def test_docs_python_blocks_run() -> None:
    """Every Python block of docs/scattering2d.md runs (each in a fresh namespace)."""
    import re

    doc = Path(__file__).resolve().parent.parent / "docs" / "scattering2d.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) >= 2
    for k, code in enumerate(blocks):
        exec(compile(code, f"<docs/scattering2d.md block {k}>", "exec"), {"__name__": "docs_example"})
