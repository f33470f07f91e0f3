"""SCRAPLLoss with small fake components (no JTFS needed): distances, reductions,
validation, path bookkeeping (consume_path / path_per_step), evaluation, the
full-tree distance and its unbiasedness in float64, state round trips."""

from __future__ import annotations

import io
import math
import warnings
from collections import defaultdict
from typing import Any, Mapping

import pytest
import torch
from torch import Tensor

from scrapl.configs import LossConfig
from scrapl.interfaces import PathInfo, PathSampler, ScatteringTransform
from scrapl import SCRAPLLoss

N = 64


class FakeJTFS(ScatteringTransform):
    """Four differentiable, non-linear "paths": |x * h_i| (circular convolution with a
    fixed kernel), then averaged in blocks of 8 samples, on 2 "frequency" rows
    (the signal and its square root).  Output ``(*batch, 2, N / 8)``; with
    ``crop_time=True`` the first and last frames are dropped (``N / 8 - 2`` frames).
    Kernels are buffers (like JTFS filters), so ``.double()`` works."""

    def __init__(self, n_samples: int = N, n_paths: int = 4, forward_crop_kw: bool = False) -> None:
        super().__init__()
        self.n_samples = n_samples
        g = torch.Generator().manual_seed(5)
        self.register_buffer("kernels", torch.randn(n_paths, n_samples, generator=g))
        self.calls: list[tuple[str, Any, bool]] = []
        self._forward_crop_kw = forward_crop_kw
        if forward_crop_kw:
            self.forward = self._forward_with_crop  # type: ignore[method-assign]

    @property
    def paths(self) -> list[tuple[int, ...]]:
        return [(i // 2, i % 2) for i in range(self.kernels.shape[0])]

    @property
    def path_infos(self) -> list[PathInfo]:
        return [PathInfo(index=i, key=k, label=f"fake path {k}") for i, k in enumerate(self.paths)]

    def _path(self, x: Tensor, i: int, crop_time: bool) -> Tensor:
        spec = torch.fft.fft(x) * torch.fft.fft(self.kernels[i].to(x.dtype))
        u = torch.fft.ifft(spec).abs()
        frames = u.reshape(*x.shape[:-1], -1, 8).mean(-1)  # (*batch, N/8)
        out = torch.stack([frames, (frames + 1e-3).sqrt()], dim=-2)  # (*batch, 2, N/8)
        return out[..., 1:-1] if crop_time else out

    def forward_path(self, x: Tensor, i: int, *, crop_time: bool = True) -> Tensor:
        self.calls.append(("path", i, torch.is_grad_enabled()))
        return self._path(x, i, crop_time)

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append(("all", None, torch.is_grad_enabled()))
        return torch.stack([self._path(x, i, True) for i in range(self.n_paths)], dim=-3)

    def _forward_with_crop(self, x: Tensor, crop_time: bool = True) -> Tensor:
        self.calls.append(("all", crop_time, torch.is_grad_enabled()))
        return torch.stack([self._path(x, i, crop_time) for i in range(self.n_paths)], dim=-3)


class FakeSampler(PathSampler):
    """Multinomial draws from a probability vector with its own generator."""

    def __init__(self, n_paths: int, generator: torch.Generator) -> None:
        self.n_paths = n_paths
        self.generator = generator
        self._probs = torch.full((n_paths,), 1.0 / n_paths, dtype=torch.float64)
        self.n_draws = 0

    @property
    def probs(self) -> Tensor:
        return self._probs

    def set_probs(self, probs: Tensor) -> None:
        self._probs = probs.double().clone()

    def sample(self, seed: int | None = None) -> int:
        if seed is not None:
            self.generator.manual_seed(seed)
        self.n_draws += 1
        return int(torch.multinomial(self._probs, 1, generator=self.generator))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "probs": self._probs, "n_draws": self.n_draws}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._probs = state["probs"].clone()
        self.n_draws = int(state["n_draws"])

    def reset(self) -> None:
        self.n_draws = 0


def make_loss(n_paths: int = 4, seed: int = 0, forward_crop_kw: bool = False, **overrides: Any) -> SCRAPLLoss:
    transform = FakeJTFS(n_paths=n_paths, forward_crop_kw=forward_crop_kw)
    sampler = FakeSampler(n_paths, torch.Generator().manual_seed(seed))
    return SCRAPLLoss.from_components(transform, sampler, **overrides)


def signals(batch: int = 2, channels: int = 1, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, channels, N, generator=g, dtype=dtype),
            torch.randn(batch, channels, N, generator=g, dtype=dtype))


def manual_dist(loss: SCRAPLLoss, x: Tensor, y: Tensor, i: int, p: float, log1p: bool, crop: bool) -> Tensor:
    sx = loss.transform._path(x, i, crop)
    sy = loss.transform._path(y, i, crop)
    if log1p:
        sx, sy = torch.log1p(sx / 1e-3), torch.log1p(sy / 1e-3)
    return ((sy - sx).abs() ** p).sum(dim=(-2, -1)) ** (1.0 / p)


# ----------------------------------------------------------------- distances
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("log1p", [False, True])
@pytest.mark.parametrize("crop", [False, True])
def test_path_distance_formula(p: float, log1p: bool, crop: bool) -> None:
    loss = make_loss(p=p, use_rho_log1p=log1p, crop_time=crop)
    x, y = signals(batch=3, channels=2, dtype=torch.float64)
    loss.double()
    for i in range(loss.n_paths):
        expected = manual_dist(loss, x, y, i, p, log1p, crop)  # (3, 2)
        torch.testing.assert_close(loss.path_distance(x, y, i, reduction="none"), expected)
        torch.testing.assert_close(loss(x, y, path_idx=i), expected.mean())


def test_reductions_and_shapes() -> None:
    x, y = signals(batch=3, channels=2)
    per = make_loss(reduction="none")(x, y, path_idx=1)
    assert per.shape == (3, 2)
    torch.testing.assert_close(make_loss(reduction="sum")(x, y, path_idx=1), per.sum())
    torch.testing.assert_close(make_loss()(x, y, path_idx=1), per.mean())
    # channels are independent examples: one channel at a time gives the same numbers
    for c in range(2):
        one = make_loss(reduction="none")(x[:, c : c + 1], y[:, c : c + 1], path_idx=1)
        torch.testing.assert_close(one[:, 0], per[:, c])


def test_identical_inputs_give_zero_and_finite_grad() -> None:
    loss = make_loss()
    x, _ = signals()
    xg = x.clone().requires_grad_(True)
    out = loss(xg, x, path_idx=2)
    out.backward()
    assert float(out.detach()) == 0.0
    assert torch.isfinite(xg.grad).all()


# ----------------------------------------------------------------- validation
def test_input_validation() -> None:
    loss = make_loss()
    x, y = signals()
    with pytest.raises(ValueError, match="batch, channels, samples"):
        loss(x[0], y[0])
    with pytest.raises(ValueError, match="same shape"):
        loss(x, y[:1])
    with pytest.raises(ValueError, match=f"{N} samples"):
        loss(x[..., :32], y[..., :32])
    with pytest.raises(TypeError, match="floating-point"):
        loss(x.long(), y.long())
    with pytest.raises(TypeError, match="same dtype"):
        loss(x, y.double())
    with pytest.raises(TypeError, match="torch.Tensor"):
        loss(x.numpy(), y)
    with pytest.raises(ValueError, match="at least one example"):
        loss(x[:0], y[:0])
    bad = y.clone()
    bad[0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="x_target contains NaN"):
        loss(x, bad)
    with pytest.raises(ValueError, match="x contains NaN"):
        loss(bad.clone().fill_(float("inf")), y)
    make_loss(check_finite=False)(x, bad, path_idx=0)  # no check: NaN propagates
    with pytest.raises(ValueError, match=r"path_idx must be in \[0, 4\)"):
        loss(x, y, path_idx=4)
    with pytest.raises(ValueError, match="path_idx"):
        loss(x, y, path_idx=-1)
    with pytest.raises(TypeError, match="path_idx"):
        loss(x, y, path_idx=True)
    with pytest.raises(TypeError, match="path_idx"):
        loss(x, y, path_idx=1.0)
    with pytest.raises(TypeError, match="seed"):
        loss(x, y, seed=1.5)
    assert loss.path_counts == {}  # nothing recorded by failed calls
    loss(x, y, path_idx=torch.tensor(3))
    assert loss.curr_path_idx == 3


def test_from_components_validation() -> None:
    t = FakeJTFS()
    with pytest.raises(ValueError, match="n_paths"):
        SCRAPLLoss.from_components(t, FakeSampler(3, torch.Generator()))
    with pytest.raises(TypeError, match="transform"):
        SCRAPLLoss.from_components(object(), FakeSampler(4, torch.Generator()))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sampler"):
        SCRAPLLoss.from_components(t, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        make_loss(reduction="max")
    with pytest.raises(ValueError, match="p"):
        make_loss(p=0)
    with pytest.raises(ValueError, match="extra"):
        make_loss(bogus=1)
    with pytest.raises(ValueError, match="grad_mult"):
        make_loss(grad_mult=1.0)  # P-Adam without log1p needs grad_mult > 1, as the reference
    make_loss(grad_mult=1.0, use_rho_log1p=True)
    make_loss(grad_mult=1.0, use_p_adam=False)
    cfg = LossConfig(p=1.0, path_per_step=False)
    loss = SCRAPLLoss.from_components(FakeJTFS(), FakeSampler(4, torch.Generator()), cfg, reduction="sum")
    assert (loss.p, loss.path_per_step, loss.reduction) == (1.0, False, "sum")
    assert SCRAPLLoss.from_components(FakeJTFS(), FakeSampler(4, torch.Generator())).path_per_step is True


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"p": 0}, "p must be"),
        ({"p": -1.0}, "p must be"),
        ({"log1p_eps": 0.0}, "log1p_eps"),
        ({"grad_mult": 1.0}, "grad_mult"),
        ({"grad_mult": float("nan")}, "grad_mult"),
        ({"n_theta": 0}, "n_theta"),
        ({"min_prob_frac": 1.0}, "min_prob_frac"),
        ({"min_prob_frac": -0.1}, "min_prob_frac"),
        ({"eps": 0.0}, "eps"),
        ({"p_adam_b1": 1.0}, "p_adam_b1"),
        ({"p_adam_b2": -0.5}, "p_adam_b2"),
        ({"p_adam_eps": 0.0}, "p_adam_eps"),
        ({"probs_path": "/nonexistent/probs.pt"}, "probs_path"),
        ({"seed": -3}, "seed"),
        ({"reduction": "avg"}, "reduction"),
        ({"eval_paths": "some"}, "eval_paths"),
    ],
)
def test_drop_in_constructor_validation(kwargs: dict, match: str) -> None:
    # Raised before any transform is built: ValueError (pydantic's ValidationError is one).
    with pytest.raises(ValueError, match=match):
        SCRAPLLoss(shape=4096, J=6, Q1=8, Q2=2, J_fr=3, Q_fr=2, **kwargs)


def test_drop_in_constructor_type_errors() -> None:
    with pytest.raises(TypeError, match="use_rho_log1p"):
        SCRAPLLoss(4096, 6, 8, 2, 3, 2, use_rho_log1p="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path_per_step"):
        SCRAPLLoss(4096, 6, 8, 2, 3, 2, path_per_step=1)  # type: ignore[arg-type]


# ----------------------------------------------------------------- target without graph
def test_target_is_computed_without_graph() -> None:
    loss = make_loss()
    x, y = signals()
    xg = x.requires_grad_(True)
    loss.transform.calls.clear()
    loss(xg, y, path_idx=0)
    grad_flags = [flag for kind, _, flag in loss.transform.calls]
    assert sorted(grad_flags) == [False, True]  # target under no_grad, x with grad
    loss.transform.calls.clear()
    yg = y.clone().requires_grad_(True)
    loss(x.detach(), yg, path_idx=0).backward()  # a target that needs grad keeps its graph
    assert yg.grad is not None and yg.grad.abs().sum() > 0


# ----------------------------------------------------------------- sampling and steps
def test_reference_style_new_path_every_training_forward() -> None:
    loss = make_loss(path_per_step=False, seed=3)
    ref = FakeSampler(4, torch.Generator().manual_seed(3))
    x, y = signals()
    drawn = []
    for _ in range(12):
        loss(x, y)
        drawn.append(loss.curr_path_idx)
    assert drawn == [ref.sample() for _ in range(12)]
    assert len(set(drawn)) > 1
    assert sum(loss.path_counts.values()) == 12 and loss.scrapl_t == 12
    assert isinstance(loss.path_counts, defaultdict)


def test_seeded_draw_is_reproducible_and_does_not_disturb_sequence() -> None:
    a, b = make_loss(path_per_step=False, seed=1), make_loss(path_per_step=False, seed=1)
    x, y = signals()
    seq_a, seq_b = [], []
    for k in range(8):
        a(x, y)
        seq_a.append(a.curr_path_idx)
        if k == 3:
            b(x, y, seed=42)
            b(x, y, seed=42)
        b(x, y)
        seq_b.append(b.curr_path_idx)
    assert seq_a == seq_b
    first = make_loss(seed=9)
    first(x, y, seed=42)
    p42 = first.curr_path_idx
    for s in (0, 5, 9):
        other = make_loss(seed=s)
        other(x, y, seed=42)
        assert other.curr_path_idx == p42
    with pytest.warns(UserWarning, match="seed is ignored"):
        first(x, y, seed=42, path_idx=3)
    assert first.curr_path_idx == 3


def test_path_per_step_reuses_path_until_consumed() -> None:
    loss = make_loss(path_per_step=True, seed=11)
    ref = FakeSampler(4, torch.Generator().manual_seed(11))
    x, y = signals()
    xg = x.clone().requires_grad_(True)
    assert loss.consume_path() is None
    steps = []
    for _ in range(10):
        paths = set()
        for _ in range(3):  # e.g. gradient accumulation over 3 micro-batches
            loss(xg, y).backward()
            paths.add(loss.curr_path_idx)
        assert len(paths) == 1
        assert loss.step_path == next(iter(paths))
        steps.append(loss.consume_path())
        assert loss.step_path is None
    assert steps == [ref.sample() for _ in range(10)]
    assert len(set(steps)) > 1
    assert loss.consume_path() is None


def test_path_per_step_explicit_path_idx_counts_as_the_step_path() -> None:
    loss = make_loss(path_per_step=True)
    x, y = signals()
    xg = x.clone().requires_grad_(True)
    loss(xg, y, path_idx=2)
    loss(xg, y)  # reuses the held path 2
    assert loss.curr_path_idx == 2
    assert loss.consume_path() == 2
    loss(xg, y, path_idx=1)
    loss(xg, y, path_idx=3)
    with pytest.raises(RuntimeError, match=r"mixes SCRAPL paths \[1, 3\]"):
        loss.consume_path()
    assert loss.consume_path() is None  # the record was cleared


def test_per_forward_paths_mixing_raises_with_advice() -> None:
    loss = make_loss(path_per_step=False, seed=0)
    x, y = signals()
    xg = x.clone().requires_grad_(True)
    loss(xg, y, path_idx=0)
    loss(xg, y, path_idx=0)
    assert loss.consume_path() == 0  # same path twice is fine
    loss(xg, y, path_idx=0)
    loss(xg, y, path_idx=1)
    with pytest.raises(RuntimeError, match="path_per_step=True"):
        loss.consume_path()
    # forwards that cannot feed a gradient do not count
    loss(xg, y, path_idx=2)
    with torch.no_grad():
        loss(xg, y, path_idx=3)
    loss(x, y, path_idx=1)  # nothing requires grad
    assert loss.consume_path() == 2
    assert loss.path_counts[3] == 1 and loss.path_counts[1] == 2  # still counted, as the reference


def test_held_path_warning_when_never_consumed(monkeypatch: pytest.MonkeyPatch) -> None:
    import scrapl.tracker as loss_mod

    monkeypatch.setattr(loss_mod, "HELD_PATH_WARN_AFTER", 5)
    loss = make_loss(path_per_step=True)
    x, y = signals()
    with pytest.warns(RuntimeWarning, match="consume_path"):
        for _ in range(6):
            loss(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(x, y)  # warned once only


def test_eval_mode_is_not_counted_and_can_use_all_paths() -> None:
    loss = make_loss(seed=2)
    x, y = signals()
    loss.eval()
    loss(x, y)
    loss(x, y, path_idx=1)
    assert loss.curr_path_idx == 1
    assert loss.path_counts == {} and loss.scrapl_t == 0 and loss.consume_path() is None
    loss_all = make_loss(eval_paths="all").eval()
    full = loss_all.full_distance(x, y)
    torch.testing.assert_close(loss_all(x, y), full)
    torch.testing.assert_close(loss_all(x, y, path_idx=2), loss_all.path_distance(x, y, 2))
    loss_all.train()
    assert not torch.allclose(loss_all(x, y, path_idx=2), full)


@pytest.mark.parametrize("crop, forward_crop_kw, expect_single_call", [
    (True, False, True), (False, False, False), (False, True, True), (True, True, True)])
def test_full_distance_is_mean_of_path_distances(crop: bool, forward_crop_kw: bool, expect_single_call: bool) -> None:
    loss = make_loss(crop_time=crop, forward_crop_kw=forward_crop_kw, reduction="none").double()
    x, y = signals(batch=2, channels=3, dtype=torch.float64)
    loss.transform.calls.clear()
    full = loss.full_distance(x, y)
    kinds = [kind for kind, _, _ in loss.transform.calls]
    if expect_single_call:
        assert kinds == ["all", "all"]
    else:
        assert kinds == ["path"] * (2 * loss.n_paths)
    expected = torch.stack([loss.path_distance(x, y, i) for i in range(loss.n_paths)]).mean(0)
    assert full.shape == (2, 3)
    torch.testing.assert_close(full, expected, rtol=1e-12, atol=1e-12)
    assert loss.path_counts == {}


@pytest.mark.parametrize("p, log1p, crop", [(2.0, False, False), (1.0, True, False), (2.0, True, True)])
def test_unbiased_gradient_float64(p: float, log1p: bool, crop: bool) -> None:
    """E_uniform[grad d_i] == grad (mean_i d_i): the average of the one-path
    gradients over all paths is the gradient of the full-tree distance."""
    loss = make_loss(p=p, use_rho_log1p=log1p, crop_time=crop).double()
    x, y = signals(batch=2, channels=2, dtype=torch.float64, seed=4)
    assert torch.allclose(loss.probs, torch.full((4,), 0.25, dtype=torch.float64))
    grads = []
    for i in range(loss.n_paths):
        xg = x.clone().requires_grad_(True)
        loss(xg, y, path_idx=i).backward()
        grads.append(xg.grad)
    xg = x.clone().requires_grad_(True)
    loss.full_distance(xg, y).backward()
    mean_grad = torch.stack(grads).mean(0)
    torch.testing.assert_close(mean_grad, xg.grad, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(grads[0], xg.grad)  # one path alone is not the full gradient


# ----------------------------------------------------------------- attributes
def test_reference_attributes_and_path_stats() -> None:
    loss = make_loss(path_per_step=False)
    assert loss.n_paths == 4 and loss.unif_prob == 0.25
    assert loss.scrapl_keys == loss.paths == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert loss.probs.dtype == torch.float64 and loss.probs.shape == (4,)
    x, y = signals()
    loss(x, y, path_idx=1)
    loss(x, y, path_idx=1)
    loss(x, y, path_idx=3)
    stats = loss.path_stats()
    assert [s["count"] for s in stats] == [0, 2, 0, 1]
    assert stats[1]["label"] == "fake path (0, 1)" and stats[1]["key"] == (0, 1)
    assert math.isclose(sum(s["prob"] for s in stats), 1.0)
    loss.probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    assert loss.path_stats()[3]["prob"] == pytest.approx(0.4)
    assert "n_paths=4" in repr(loss)
    # the reference's distance settings are plain attributes: still settable, validated
    x64, y64 = signals(dtype=torch.float64)
    loss.double()
    loss.p, loss.use_rho_log1p, loss.log1p_eps = 1, True, 1e-3
    torch.testing.assert_close(loss(x64, y64, path_idx=0), manual_dist(loss, x64, y64, 0, 1.0, True, False).mean())
    with pytest.raises(ValueError, match="p must be"):
        loss.p = 0
    with pytest.raises(ValueError, match="log1p_eps"):
        loss.log1p_eps = -1.0


def test_clear_forgets_state() -> None:
    loss = make_loss(path_per_step=True)
    x, y = signals()
    loss.probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    loss(x.requires_grad_(True), y)
    loss.clear()
    assert loss.curr_path_idx is None and loss.path_counts == {} and loss.scrapl_t == 0
    assert loss.step_path is None and loss.consume_path() is None
    torch.testing.assert_close(loss.probs, torch.full((4,), 0.25, dtype=torch.float64))


# ----------------------------------------------------------------- state
def roundtrip(obj: Any) -> Any:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("path_per_step", [False, True])
def test_state_dict_round_trip_resumes_the_same_paths(path_per_step: bool) -> None:
    loss = make_loss(path_per_step=path_per_step, seed=21)
    x, y = signals()
    xg = x.clone().requires_grad_(True)
    for _ in range(5):
        loss(xg, y)
        loss.consume_path()
    if path_per_step:
        loss(xg, y)  # mid-step: the held path must survive too
    sd = roundtrip(loss.state_dict())
    assert not any(k.startswith("transform.") for k in sd)  # filters are rebuilt, not saved
    assert set(sd) == {"_extra_state"}
    cont = []
    for _ in range(8):
        loss(xg, y)
        cont.append(loss.consume_path())

    fresh = make_loss(path_per_step=path_per_step, seed=999)
    fresh.load_state_dict(sd)  # strict
    assert isinstance(fresh.path_counts, defaultdict)
    assert fresh.scrapl_t == 5 + path_per_step
    resumed = []
    for _ in range(8):
        fresh(xg, y)
        resumed.append(fresh.consume_path())
    assert resumed == cont
    assert dict(fresh.path_counts) == dict(loss.path_counts)


def test_state_dict_is_a_snapshot_and_nests_in_a_parent_module() -> None:
    loss = make_loss(path_per_step=False)
    x, y = signals()
    loss(x, y, path_idx=2)
    sd = loss.state_dict()
    loss.clear()
    assert loss.path_counts == {}
    loss.load_state_dict(sd)
    assert loss.path_counts == {2: 1}

    parent = torch.nn.ModuleDict({"net": torch.nn.Linear(2, 2), "loss": make_loss()})
    parent["loss"](x, y, path_idx=1)
    psd = roundtrip(parent.state_dict())
    assert sorted(psd) == ["loss._extra_state", "net.bias", "net.weight"]
    other = torch.nn.ModuleDict({"net": torch.nn.Linear(2, 2), "loss": make_loss()})
    other.load_state_dict(psd)
    assert other["loss"].path_counts == {1: 1}
    with pytest.raises(ValueError, match="paths"):
        make_loss(n_paths=3).load_state_dict(sd)


def test_check_is_deterministic_static() -> None:
    lin = torch.nn.Linear(N, 3)
    theta_fn = lambda x: lin(x.squeeze(1))  # noqa: E731
    synth_fn = lambda th: th.sum(-1, keepdim=True).unsqueeze(1).expand(-1, 1, N)  # noqa: E731
    kwargs = {"x": torch.randn(2, 1, N)}
    assert SCRAPLLoss.check_is_deterministic(theta_fn, kwargs, synth_fn) is True
    noisy = lambda th: synth_fn(th) + torch.rand(1)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="synth_fn"):
        assert SCRAPLLoss.check_is_deterministic(theta_fn, kwargs, synth=noisy) is False


# ----------------------------------------------------------------- attach_params hooks
def _toy(seed: int = 0) -> tuple[torch.nn.Linear, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(3, N)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(N, 3, generator=g) * 0.3)
        lin.bias.zero_()
    z = torch.randn(2, 3, generator=g)
    target = torch.randn(2, 1, N, generator=g)
    return lin, z, target


def _train(loss: SCRAPLLoss, lin: torch.nn.Linear, z: Tensor, target: Tensor, paths: list[int]) -> None:
    opt = torch.optim.SGD(lin.parameters(), lr=1e-2)
    for path in paths:
        opt.zero_grad()
        loss(lin(z).unsqueeze(1), target, path_idx=path).backward()
        opt.step()


def test_attach_params_transforms_gradients_like_p_adam() -> None:
    loss = make_loss(path_per_step=False, use_p_saga=False)
    lin, z, target = _toy()
    raw = torch.autograd.grad(loss(lin(z).unsqueeze(1), target, path_idx=1), lin.weight)[0]
    loss.attach_params(lin.parameters())
    assert len(loss.attached_params) == 2
    loss(lin(z).unsqueeze(1), target, path_idx=1).backward()
    # First P-Adam output: m_hat / (sqrt(v_hat) + eps) = sign(g) where g != 0.
    nz = raw.abs() > 1e-6
    torch.testing.assert_close(lin.weight.grad[nz], raw.sign()[nz], rtol=1e-4, atol=1e-4)
    # eval mode: gradients are left alone (reference behaviour)
    lin.zero_grad()
    loss.eval()
    loss(lin(z).unsqueeze(1), target, path_idx=1).backward()
    torch.testing.assert_close(lin.weight.grad, raw)
    loss.train()
    loss.attach_params([])
    assert loss.attached_params == [] and loss.hooks is None


def test_attach_params_needs_per_forward_paths() -> None:
    loss = make_loss(path_per_step=True)
    lin, _, _ = _toy()
    with pytest.raises(ValueError, match="path_per_step=False"):
        loss.attach_params(lin.parameters())
    loss.attach_params([])  # detaching is always fine


def test_attach_params_state_round_trip_resumes_identically() -> None:
    paths = [0, 2, 0, 3, 1, 2, 2, 0]
    lin_a, z, target = _toy()
    loss_a = make_loss(path_per_step=False)
    loss_a.attach_params(lin_a.parameters())
    _train(loss_a, lin_a, z, target, paths)

    lin_b, _, _ = _toy()
    loss_b = make_loss(path_per_step=False)
    loss_b.attach_params(lin_b.parameters())
    _train(loss_b, lin_b, z, target, paths[:4])
    sd = roundtrip({"loss": loss_b.state_dict(), "model": lin_b.state_dict()})
    assert sd["loss"]["_extra_state"]["hooks"] is not None

    lin_c = torch.nn.Linear(3, N)
    lin_c.load_state_dict(sd["model"])
    loss_c = make_loss(path_per_step=False)
    loss_c.load_state_dict(sd["loss"])  # hooks state is kept until the parameters are attached
    loss_c.attach_params(lin_c.parameters())
    assert loss_c.scrapl_t == 0  # attach_params restarts the step counter (reference) ...
    loss_c.load_state_dict(sd["loss"])  # ... so load after attaching to resume the counter too
    assert loss_c.scrapl_t == 4
    _train(loss_c, lin_c, z, target, paths[4:])
    torch.testing.assert_close(lin_c.weight, lin_a.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(lin_c.bias, lin_a.bias, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------- theta-IS warmup
def _warmup_setup(n_theta: int = 2) -> tuple[Any, Any, list[dict[str, Tensor]], list[Tensor]]:
    g = torch.Generator().manual_seed(8)
    enc = torch.nn.Sequential(torch.nn.Linear(N, n_theta), torch.nn.Sigmoid())
    basis = torch.randn(n_theta, N, generator=g)
    theta_fn = lambda x: enc(x.squeeze(1))  # noqa: E731
    synth_fn = lambda theta: torch.tanh(theta @ basis).unsqueeze(1)  # noqa: E731
    batches = [{"x": torch.rand(3, 1, N, generator=g)}]
    return theta_fn, synth_fn, batches, list(enc.parameters())


def _theta_is_loss(n_theta: int = 2, **kw: Any) -> SCRAPLLoss:
    from scrapl.samplers import ThetaISSampler

    sampler = ThetaISSampler(4, n_theta=n_theta, generator=torch.Generator().manual_seed(0))
    return SCRAPLLoss.from_components(FakeJTFS(), sampler, path_per_step=False, **kw)


def test_warmup_sets_probs_and_files_round_trip(tmp_path: Any) -> None:
    theta_fn, synth_fn, batches, params = _warmup_setup()
    loss = _theta_is_loss()
    assert loss.n_theta == 2
    x, y = signals()
    loss(x, y, path_idx=1)
    loss.warmup_lc_hvp(theta_fn, synth_fn, batches, params, save_dir=str(tmp_path / "w"), n_iter=10)
    probs = loss.probs
    assert not torch.allclose(probs, torch.full((4,), 0.25, dtype=torch.float64))
    assert math.isclose(float(probs.sum()), 1.0, abs_tol=1e-9)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["probs.pt", "vals_0.pt", "vals_1.pt",
                                                                  "vals_2.pt", "vals_3.pt", "warmup.json"]
    assert loss.path_counts == {1: 1}  # the warmup's distance has no side effects
    torch.testing.assert_close(torch.load(tmp_path / "w" / "probs.pt", weights_only=True), probs)

    # two halves written separately (as parallel processes would), then merged
    half = _theta_is_loss()
    half.warmup_lc_hvp(theta_fn, synth_fn, batches, params, save_dir=str(tmp_path / "s"), end_path_idx=2, n_iter=10)
    half.warmup_lc_hvp(theta_fn, synth_fn, batches, params, save_dir=str(tmp_path / "s"), start_path_idx=2,
                       n_iter=10)
    torch.testing.assert_close(half.probs, probs)
    merged = _theta_is_loss()
    merged(x, y, path_idx=0)
    merged.load_probs_from_warmup_dir(str(tmp_path / "s"))
    torch.testing.assert_close(merged.probs, probs)
    assert merged.path_counts == {}  # cleared first, as the reference
    fresh = _theta_is_loss()
    fresh.load_probs(str(tmp_path / "w" / "probs.pt"))
    torch.testing.assert_close(fresh.probs, probs)


def test_warmup_argument_errors(tmp_path: Any) -> None:
    theta_fn, synth_fn, batches, params = _warmup_setup()
    with pytest.raises(TypeError, match="theta-IS"):
        make_loss(path_per_step=False).warmup_lc_hvp(theta_fn, synth_fn, batches, params, save_dir=None)
    loss = _theta_is_loss()
    with pytest.raises(ValueError, match="params"):
        loss.warmup_lc_hvp(theta_fn, synth_fn, batches, [], save_dir=None)
    with pytest.raises(ValueError, match="theta_fn_kwargs"):
        loss.warmup_lc_hvp(theta_fn, synth_fn, [], params, save_dir=None)
    with pytest.raises(ValueError, match="end_path_idx"):
        loss.warmup_lc_hvp(theta_fn, synth_fn, batches, params, save_dir=None, start_path_idx=3, end_path_idx=3)
    with pytest.raises(ValueError, match="synth_fn_kwargs"):
        loss.warmup_lc_hvp(theta_fn, synth_fn, batches, params, synth_fn_kwargs=[{}, {}], save_dir=None)
    loss.attach_params(params)
    with pytest.raises(ValueError, match="attached"):
        loss.warmup_lc_hvp(theta_fn, synth_fn, batches, params, save_dir=None)
    with pytest.raises(FileNotFoundError):
        loss.load_probs_from_warmup_dir(str(tmp_path / "missing"))
    with pytest.raises(TypeError, match="theta-IS"):
        make_loss().load_probs_from_warmup_dir(str(tmp_path))


@pytest.mark.parametrize("scale", [1e-30, 1e-6, 1.0, 1e8, 1e30])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_path_norm_is_scale_robust_with_and_without_the_scaling(scale: float, p: float) -> None:
    """The p-norm of a coefficient difference: directly when its peak is moderate
    (p <= 2), through power-of-two scaling otherwise; both equal the float64 norm."""
    from scrapl import build
    from scrapl.transforms.scale import normalise, rescale

    loss = build({"transform": {"name": "jtfs", "shape": 1024, "J": 4, "Q1": 2, "Q2": 1, "J_fr": 2, "Q_fr": 1},
                  "loss": {"p": p}}).loss
    diff = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * scale
    got = loss._norm(diff)
    want = torch.linalg.vector_norm(diff.double().reshape(2, 3, -1), ord=p, dim=-1)
    assert got.shape == (2, 3) and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=0)
    flat, s = normalise(diff.reshape(-1, 35))
    scaled = rescale(torch.linalg.vector_norm(flat, ord=p, dim=-1), s).reshape(2, 3)
    torch.testing.assert_close(got, scaled, rtol=2e-7, atol=0)
