"""Tests of the ``scattering1d`` transform plugin against Kymatio 0.3.0 golden data.

The fixtures ``tests/fixtures/scattering1d_*.pt`` come from
``scripts/make_scattering1d_golden.py`` (run with Kymatio 0.3.0 in a scratch
environment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from scrapl.interfaces import PathInfo, ScatteringTransform
from scrapl.transforms.scattering1d import PLUGINS, Scattering1DConfig, TimeScattering, make_scattering1d
from scrapl.transforms.scattering1d.core import ModulusStable, modulus
from scrapl.transforms.scattering1d.filters import build_filterbank, filter_params

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = ["j6_q8_n4096", "j8_q12x2_n8192", "j6_q4x2_n3000_t48_os1"]
RTOL_L2 = 1e-5


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


_cache: dict[str, Any] = {}


def golden(name: str) -> tuple[dict[str, Any], TimeScattering]:
    if name not in _cache:
        data = torch.load(FIXTURES / f"scattering1d_{name}.pt", weights_only=True)
        p = data["params"]
        S = TimeScattering(shape=p["shape"], J=p["J"], Q=tuple(p["Q"]), T=p["T"], oversampling=p["oversampling"])
        _cache[name] = (data, S)
    return _cache[name]


def tiny(**kw: Any) -> TimeScattering:
    cfg = dict(shape=96, J=3, Q=(2, 1))
    cfg.update(kw)
    return TimeScattering(**cfg)


# ------------------------------------------------------------------ golden data
@pytest.mark.parametrize("name", GOLDEN)
def test_padding_and_sizes_match_kymatio(name: str) -> None:
    data, S = golden(name)
    assert S.n_padded == data["N_padded"]
    assert (S.pad_left, S.pad_right) == (data["pad_left"], data["pad_right"])
    assert list(S.padding.ind_start) == data["ind_start"]
    assert list(S.padding.ind_end) == data["ind_end"]
    assert [1, S.n_first_order, S.n_paths] == data["sizes"]
    assert S.T == data["params"]["T_effective"] and S.log2_T == data["params"]["log2_T"]
    assert S.n_frames == data["full"].shape[-1]


@pytest.mark.parametrize("name", GOLDEN)
def test_meta_matches_kymatio(name: str) -> None:
    data, S = golden(name)
    meta = S.meta()
    ref = data["meta"]
    assert meta["key"] == [tuple(k) for k in ref["key"]]
    assert torch.equal(meta["order"].double(), ref["order"])
    for field in ("xi", "sigma", "j", "n"):
        torch.testing.assert_close(meta[field], ref[field], rtol=0, atol=0, equal_nan=True)
    # path order: Kymatio's second-order channels, n1 outer, n2 inner, j1 < j2
    second = [tuple(k) for k in ref["key"] if len(k) == 2]
    assert S.paths == second
    assert all(S.j1[n1] < S.j2[n2] for n1, n2 in S.paths)


@pytest.mark.parametrize("name", GOLDEN)
def test_filter_tables_match_kymatio(name: str) -> None:
    data, S = golden(name)
    tabs = data["tables"]
    assert torch.equal(torch.tensor(S.xi1, dtype=torch.float64), tabs["psi1"]["xi"])
    assert torch.equal(torch.tensor(S.sigma1, dtype=torch.float64), tabs["psi1"]["sigma"])
    assert torch.equal(torch.tensor(S.j1), tabs["psi1"]["j"])
    assert torch.equal(torch.tensor(S.xi2, dtype=torch.float64), tabs["psi2"]["xi"])
    assert torch.equal(torch.tensor(S.j2), tabs["psi2"]["j"])


def test_filter_params_extra_tables_match_kymatio() -> None:
    data = torch.load(FIXTURES / "scattering1d_filterbank_params.pt", weights_only=True)
    assert "2,8" in data["tables"]  # the degenerate bank (no constant-Q part)
    for key, tabs in data["tables"].items():
        J, Q = (int(v) for v in key.split(","))
        p = filter_params(J, Q)
        assert torch.equal(torch.tensor(p.xi, dtype=torch.float64), tabs["psi1"]["xi"]), key
        assert torch.equal(torch.tensor(p.sigma, dtype=torch.float64), tabs["psi1"]["sigma"]), key
        assert torch.equal(torch.tensor(p.j), tabs["psi1"]["j"]), key


def test_filters_match_kymatio() -> None:
    data, S = golden("j6_q8_n4096")
    f = data["filters"]
    torch.testing.assert_close(S.phi_0, f["phi_level0"], rtol=1e-6, atol=1e-9)
    last = sum(1 for name, _ in S.named_buffers() if name.startswith("phi_")) - 1
    assert last + 1 == data["phi_levels"]
    torch.testing.assert_close(getattr(S, f"phi_{last}"), f["phi_last_level"], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(S.psi1[f["psi1_n1"]], f["psi1"], rtol=1e-6, atol=1e-9)
    # the last psi2 wavelet at every level a path uses (0.3.0 levels are fold means)
    n2 = len(S.xi2) - 1
    for level, ref in enumerate(f["psi2_last_levels"]):
        if level in S._psi2_first:
            torch.testing.assert_close(S._psi2(level, n2, n2 + 1)[0], ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", GOLDEN)
def test_forward_full_matches_kymatio(name: str) -> None:
    data, S = golden(name)
    out = S.forward_full(data["x"])
    assert out.shape == data["full"].shape and out.dtype == torch.float32
    assert rel_l2(out, data["full"]) <= RTOL_L2


@pytest.mark.parametrize("name", GOLDEN)
def test_forward_path_matches_kymatio_every_path(name: str) -> None:
    data, S = golden(name)
    x, full = data["x"], data["full"]
    n0 = 1 + S.n_first_order
    worst = 0.0
    for i in range(S.n_paths):
        y = S.forward_path(x, i)
        assert y.shape == (x.shape[0], 1, S.n_frames)
        worst = max(worst, rel_l2(y[:, 0], full[:, n0 + i]))
    assert worst <= RTOL_L2


@pytest.mark.parametrize("name", GOLDEN)
def test_forward_is_stack_of_forward_path(name: str) -> None:
    data, S = golden(name)
    x = data["x"]
    # every path of the small configurations; a stride through the large one
    idx = list(range(S.n_paths)) if S.n_paths < 200 else [*range(0, S.n_paths, 7), S.n_paths - 1]
    for crop in (True, False):
        out = S(x, crop_time=crop)
        frames = S.n_frames if crop else S.n_frames_padded
        assert out.shape == (x.shape[0], S.n_paths, 1, frames)
        paths = torch.stack([S.forward_path(x, i, crop_time=crop) for i in idx], dim=-3)
        torch.testing.assert_close(out[:, idx], paths, rtol=1e-5, atol=1e-7)


def test_crop_false_keeps_padded_frames() -> None:
    data, S = golden("j6_q8_n4096")
    x = data["x"]
    padded = S.forward_path(x, 5, crop_time=False)
    cropped = S.forward_path(x, 5)
    assert padded.shape[-1] == S.n_padded // 2 ** S.log2_T
    torch.testing.assert_close(padded[..., S._i0 : S._i1], cropped, rtol=0, atol=0)


def test_gradient_matches_kymatio() -> None:
    data, S = golden("j6_q8_n4096")
    x = data["x"].clone().requires_grad_(True)
    w = torch.randn(data["full"].shape, generator=torch.Generator().manual_seed(data["grad_weight_seed"]))
    (S.forward_full(x) * w).sum().backward()
    assert rel_l2(x.grad, data["grad"]) <= RTOL_L2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_golden_on_cuda() -> None:
    data, S = golden("j6_q8_n4096")
    Sc = TimeScattering(S.config).cuda()
    x = data["x"].cuda()
    assert rel_l2(Sc.forward_full(x).cpu(), data["full"]) <= RTOL_L2
    n0 = 1 + S.n_first_order
    for i in (0, S.n_paths // 2, S.n_paths - 1):
        assert rel_l2(Sc.forward_path(x, i)[:, 0].cpu(), data["full"][:, n0 + i]) <= RTOL_L2


# ------------------------------------------------------------------ shapes / dtypes
def test_batch_shapes() -> None:
    S = tiny()
    x = torch.randn(3, 2, 96)
    out = S(x)
    assert out.shape == (3, 2, S.n_paths, 1, S.n_frames)
    torch.testing.assert_close(out[1, 0], S(x[1, 0][None])[0])
    assert S.forward_path(x, 1).shape == (3, 2, 1, S.n_frames)
    assert S.forward_full(x).shape == (3, 2, 1 + S.n_first_order + S.n_paths, S.n_frames)
    assert S.forward_path(x[0, 0], 0).shape == (1, S.n_frames)


def test_float64_input() -> None:
    S = tiny()
    x = torch.randn(2, 96, generator=torch.Generator().manual_seed(0))
    y64 = S(x.double())
    assert y64.dtype == torch.float64
    assert rel_l2(S(x), y64) < 1e-5
    S64 = tiny().double()
    torch.testing.assert_close(S64(x.double()), y64)
    assert S64(x).dtype == torch.float32


def test_buffers_are_not_persistent_and_move_with_module() -> None:
    S = tiny()
    assert S.state_dict() == {}
    assert "psi1" in dict(S.named_buffers())
    assert S.to(torch.float64).psi1.dtype == torch.float64


def test_is_scattering_transform_with_path_infos() -> None:
    S = tiny(shape=256, J=4, Q=(4, 1), T=16)
    assert isinstance(S, ScatteringTransform)
    infos = S.path_infos
    assert len(infos) == S.n_paths == len(S.paths)
    for i, (info, key) in enumerate(zip(infos, S.paths)):
        assert isinstance(info, PathInfo)
        n1, n2 = key
        assert info.index == i and info.key == key
        assert info.temporal_rate == S.xi2[n2]
        assert info.freq_scale is None and info.spin is None
        assert info.extra["n1"] == n1 and info.extra["n2"] == n2
        assert info.extra["xi1"] == S.xi1[n1] and info.extra["j1"] == S.j1[n1] and info.extra["j2"] == S.j2[n2]
        assert info.label == f"n1={n1} ({S.xi1[n1]:.2g} c/s) n2={n2} ({S.xi2[n2]:.2g} c/s)"
    assert infos[0].temporal_rate_hz(16000) == pytest.approx(S.xi2[S.paths[0][1]] * 16000)


# ------------------------------------------------------------------ gradients
def test_gradcheck_float64() -> None:
    S = tiny().double()
    x = torch.randn(1, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
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
    x = torch.randn(1, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: S.forward_path(v, 2), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_modulus_backward_is_zero_at_zero() -> None:
    z = torch.tensor([0j, 3 + 4j], dtype=torch.complex128, requires_grad=True)
    out = modulus(z)
    assert out.tolist() == [0.0, 5.0]
    out.sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([0j, 0.6 + 0.8j], dtype=torch.complex128))
    assert z.grad[0] == 0
    # zero input: finite (zero) gradients through the whole transform
    S = tiny()
    x = torch.zeros(1, 96, requires_grad=True)
    S.forward_path(x, 0).sum().backward()
    assert torch.isfinite(x.grad).all() and not x.grad.any()
    assert ModulusStable.apply(torch.zeros(2, dtype=torch.complex64)).tolist() == [0.0, 0.0]


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(shape=96, J=7), "J=7"),
        (dict(shape=96, J=3, T=0), "T=0"),
        (dict(shape=96, J=3, T=97), "T must be"),
        (dict(shape=96, J=3, T=-2), "T must be"),
        (dict(shape=96, J=3, Q=0), "Q"),
        (dict(shape=96, J=3, Q=(1, 2, 3)), "Q"),
        (dict(shape=96, J=3, Q=1.5), "Q"),
        (dict(shape=96, J=3, Q=(2, 0)), "Q"),
        (dict(shape=0, J=3), "shape"),
        (dict(shape=(96, 2), J=3), "shape"),
        (dict(shape=96.0, J=3), "shape"),
        (dict(shape=96, J=0), "J"),
        (dict(shape=96, J=3, oversampling=-1), "oversampling"),
        (dict(shape=96, J=3, average=True), "average"),
    ],
)
def test_config_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Scattering1DConfig(**kw)


def test_config_forms_and_round_trip() -> None:
    assert Scattering1DConfig(shape=(96,), J=3, Q=[2]).q_pair == (2, 1)
    assert Scattering1DConfig(shape=96, J=3, Q=2).q_pair == (2, 1)
    assert Scattering1DConfig(shape=96, J=3).q_pair == (1, 1)
    cfg = Scattering1DConfig(shape=96, J=3, Q=(2, 1), T=8, oversampling=1)
    assert Scattering1DConfig.model_validate(cfg.model_dump()) == cfg
    assert Scattering1DConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ValidationError):
        cfg.J = 4  # frozen


def test_no_second_order_path_is_an_error() -> None:
    with pytest.raises(ValueError, match="no second-order path"):
        TimeScattering(shape=96, J=1, Q=1)


@pytest.mark.filterwarnings("ignore:Signal support is too small")
def test_too_short_signal_for_padding_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        build_filterbank(1, 0, (1, 1), 1)


def test_constructor_argument_errors() -> None:
    cfg = Scattering1DConfig(shape=96, J=3, Q=(2, 1))
    with pytest.raises(TypeError, match="either"):
        TimeScattering(cfg, J=3)
    with pytest.raises(TypeError, match="Scattering1DConfig"):
        TimeScattering({"shape": 96, "J": 3})  # type: ignore[arg-type]
    assert TimeScattering(cfg).paths == tiny().paths


def test_input_errors() -> None:
    S = tiny()
    x = torch.randn(2, 96)
    with pytest.raises(TypeError, match="float32 or float64"):
        S(torch.ones(2, 96, dtype=torch.int64))
    with pytest.raises(TypeError, match="float32 or float64"):
        S.forward_path(torch.ones(2, 96, dtype=torch.complex64), 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        S(torch.ones(2, 96, dtype=torch.float16))
    with pytest.raises(TypeError, match="torch.Tensor"):
        S([0.0] * 96)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples=96"):
        S(torch.randn(2, 95))
    with pytest.raises(ValueError, match="samples=96"):
        S.forward_path(torch.tensor(1.0), 0)
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
    bad[0, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        S.forward_path(bad, 0)
    bad[0, 5] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        S(bad)
    with pytest.raises(ValueError, match="transform.to"):
        S(torch.empty(2, 96, device="meta"))
    lax = tiny(check_finite=False)
    assert torch.isnan(lax.forward_path(torch.full((1, 96), float("nan")), 0)).all()


# ------------------------------------------------------------------ plugin spec
def test_plugin_spec() -> None:
    (spec,) = PLUGINS
    assert (spec.kind, spec.name, spec.config_cls) == ("transform", "scattering1d", Scattering1DConfig)
    S = spec.factory(Scattering1DConfig(shape=96, J=3, Q=(2, 1)))
    assert isinstance(S, TimeScattering) and S.n_paths == 4
    assert make_scattering1d({"name": "scattering1d", "shape": 96, "J": 3}).n_samples == 96  # type: ignore[arg-type]
    assert "n_paths=4" in repr(S)


def test_degenerate_filterbank() -> None:
    """J=2, Q1=8: the widest first-order wavelet is already narrower than sigma0/2**J,
    so the bank is only the constant-bandwidth tail (checked against Kymatio in
    test_filter_params_extra_tables_match_kymatio); its wavelets all have j1=1 and no
    second-order wavelet of J=2 has j2 > 1, so there is no path."""
    p = filter_params(2, 8)
    assert len(p) == 7 and all(s == 0.1 / 4 for s in p.sigma) and set(p.j) == {1}
    with pytest.raises(ValueError, match="no second-order path"):
        TimeScattering(shape=96, J=2, Q=(8, 2))
