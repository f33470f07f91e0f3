"""SCRAPLLoss with the real JTFS transform: unbiasedness in float64, the full-tree
distance, the drop-in against build(), checkpoints without filters."""

from __future__ import annotations

import io

import pytest
import torch

import scrapl
from scrapl import SCRAPLLoss
from scrapl.samplers import ThetaISSampler, UniformSampler
from scrapl.transforms.jtfs import JTFS

CFG = dict(shape=1024, J=4, Q1=2, Q2=1, J_fr=2, Q_fr=1)  # 14 paths


@pytest.fixture(scope="module")
def jtfs64() -> JTFS:
    return JTFS(**CFG).double()


def signals(dtype: torch.dtype = torch.float64, batch: int = 2, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    t = torch.arange(CFG["shape"], dtype=torch.float64) / 1024
    x = torch.sin(2 * torch.pi * 60 * t * (1 + t)) + 0.1 * torch.randn(batch, channels, CFG["shape"], generator=g,
                                                                        dtype=torch.float64)
    y = torch.sin(2 * torch.pi * 90 * t) * (1 + torch.sin(2 * torch.pi * 7 * t)) + 0.1 * torch.randn(
        batch, channels, CFG["shape"], generator=g, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


@pytest.mark.parametrize("p, log1p, crop", [(2.0, False, False), (1.0, True, True)])
def test_unbiased_gradient_real_jtfs_float64(jtfs64: JTFS, p: float, log1p: bool, crop: bool) -> None:
    """With uniform sampling, E_i[grad d_i] = (1/P) sum_i grad d_i equals the gradient
    of the full-tree distance (Proposition 3.1), to float64 precision."""
    sampler = UniformSampler(jtfs64.n_paths, generator=torch.Generator().manual_seed(0))
    loss = SCRAPLLoss.from_components(jtfs64, sampler, path_per_step=False, p=p, use_rho_log1p=log1p,
                                      crop_time=crop)
    assert torch.allclose(loss.probs, torch.full((loss.n_paths,), 1.0 / loss.n_paths, dtype=torch.float64))
    x, y = signals()
    total = torch.zeros_like(x)
    for i in range(loss.n_paths):
        xg = x.clone().requires_grad_(True)
        loss(xg, y, path_idx=i).backward()
        total += xg.grad * float(loss.probs[i])  # expectation under the sampler's probabilities
    xg = x.clone().requires_grad_(True)
    loss.full_distance(xg, y).backward()
    scale = float(xg.grad.abs().max())
    torch.testing.assert_close(total, xg.grad, rtol=1e-9, atol=1e-12 * scale)


def test_full_distance_uses_one_transform_call(jtfs64: JTFS, monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = UniformSampler(jtfs64.n_paths, generator=torch.Generator().manual_seed(0))
    x, y = signals(batch=1, channels=2)
    for crop in (False, True):
        loss = SCRAPLLoss.from_components(jtfs64, sampler, crop_time=crop, reduction="none")
        per_path = torch.stack([loss.path_distance(x, y, i) for i in range(loss.n_paths)])
        calls = []
        orig = type(jtfs64).forward_path
        monkeypatch.setattr(type(jtfs64), "forward_path", lambda *a, **k: calls.append(1) or orig(*a, **k))
        full = loss.full_distance(x, y)
        monkeypatch.undo()
        assert calls == []  # computed by transform.forward, once per signal
        assert full.shape == (1, 2)
        torch.testing.assert_close(full, per_path.mean(0), rtol=1e-10, atol=0.0)


def test_drop_in_equals_build_components() -> None:
    drop_in = SCRAPLLoss(**CFG, seed=5)
    built = scrapl.build({"transform": {"name": "jtfs", **CFG}, "sampler": {"name": "theta_is"},
                          "loss": {"path_per_step": False}, "seed": 5})
    assert built.loss.n_paths == drop_in.n_paths and built.loss.scrapl_keys == drop_in.scrapl_keys
    x, y = signals(torch.float32)
    for i in (0, 5, drop_in.n_paths - 1):
        with torch.no_grad():
            torch.testing.assert_close(built.loss(x, y, path_idx=i), drop_in(x, y, path_idx=i))
    seq_a, seq_b = [], []
    with torch.no_grad():
        for _ in range(6):
            drop_in(x, y)
            built.loss(x, y)
            seq_a.append(drop_in.curr_path_idx)
            seq_b.append(built.loss.curr_path_idx)
    assert seq_a == seq_b  # same seed, same sampler: same draws
    assert isinstance(drop_in.sampler, ThetaISSampler)


def test_drop_in_seed_from_global_rng_and_checkpoint() -> None:
    # seed=None: draws come from torch's global generator (the reference's sequence
    # under torch.manual_seed), construction does not consume from it.
    x, y = signals(torch.float32)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        a = SCRAPLLoss(**CFG)
        with torch.no_grad():
            runs.append([int(a.sample_path()) for _ in range(5)])
    assert runs[0] == runs[1] and a.seed is None
    # a private seed: reproducible from the seed alone, and checkpointed
    a = SCRAPLLoss(**CFG, seed=11)
    b = SCRAPLLoss(**CFG, seed=11)
    c = SCRAPLLoss(**CFG, seed=12)
    assert a.seed == b.seed != c.seed
    assert [a.sample_path() for _ in range(5)] == [b.sample_path() for _ in range(5)]
    with torch.no_grad():
        for _ in range(3):
            a(x, y)
    sd = a.state_dict()
    assert list(sd) == ["_extra_state"]  # filters are rebuilt from the config, never saved
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert [a.sample_path() for _ in range(10)] == [c.sample_path() for _ in range(10)]
    assert c.path_counts == a.path_counts and c.scrapl_t == 3


def test_gradient_accumulation_with_build_optimizer() -> None:
    """Two forwards per optimizer step stay on one path; the optimizer consumes it."""
    built = scrapl.build({"transform": {"name": "jtfs", **CFG}, "optimizer": {"name": "p_adam_saga"}, "seed": 2})
    loss_fn = built.loss
    model = torch.nn.Linear(8, CFG["shape"])
    opt = built.optimizer(model.parameters(), lr=1e-3)
    z, target = torch.randn(4, 8), torch.randn(4, 1, CFG["shape"])
    steps = []
    for _ in range(4):
        opt.zero_grad()
        used = set()
        for half in (slice(0, 2), slice(2, 4)):
            loss_fn(model(z[half]).unsqueeze(1), target[half]).backward()
            used.add(loss_fn.curr_path_idx)
        assert len(used) == 1 and loss_fn.step_path in used
        opt.step()
        assert loss_fn.step_path is None  # consumed by the optimizer
        steps.append(used.pop())
    assert len(set(steps)) > 1


@pytest.mark.parametrize("q1", [2, 4])  # Q1=4: some first-order groups take the one-sided (fused) route
def test_second_derivative_through_the_loss(q1: int) -> None:
    """The theta-IS warmup differentiates the loss twice (Hessian-vector products
    w.r.t. the synthesized signal); check d/dx <grad_x d_i(x), v> against a central
    finite difference of grad_x d_i in float64."""
    transform = JTFS(**{**CFG, "Q1": q1}).double()
    sampler = UniformSampler(transform.n_paths, generator=torch.Generator().manual_seed(0))
    loss = SCRAPLLoss.from_components(transform, sampler, path_per_step=False)
    last = loss.n_paths - 1  # the largest j2: every first-order group feeds it
    x, y = signals(batch=1)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss.path_distance(xg, y, last), xg, create_graph=True)
    (hvp,) = torch.autograd.grad((grad * v).sum(), xg)

    def grad_at(x0: torch.Tensor) -> torch.Tensor:
        x0 = x0.clone().requires_grad_(True)
        return torch.autograd.grad(loss.path_distance(x0, y, last), x0)[0]

    h = 1e-6  # the modulus makes third derivatives large: a small step (float64)
    fd = (grad_at(x + h * v) - grad_at(x - h * v)) / (2 * h)
    torch.testing.assert_close(hvp, fd, rtol=0.0, atol=1e-4 * float(fd.abs().max()))


def test_docs_examples_run(tmp_path: "pytest.TempPathFactory", monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python block of docs/loss.md runs (each in a fresh namespace)."""
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "loss.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for k, code in enumerate(blocks):
            exec(compile(code, f"<docs/loss.md block {k}>", "exec"), {"__name__": "docs_example"})
