"""Tests of the path-aware optimizers (scrapl.optim): update equations against a
written-out computation, scale invariance, checkpoints, and the torch.optim
machinery (GradScaler, accumulation, schedulers, clipping, param groups)."""

from __future__ import annotations

import io
import math
import random

import pytest
import torch
from pydantic import ValidationError

import scrapl.optim as O
from scrapl.interfaces import PathAwareOptimizer, PluginSpec
from scrapl.optim import functional as F

CLASSES = {"p_adam_saga": O.PAdamSAGA, "p_adam": O.PAdam, "p_saga": O.PSAGA}
FLAGS = {"p_adam_saga": (True, True), "p_adam": (True, False), "p_saga": (False, True)}


# --------------------------------------------------------------------------- helpers
def quad_problem(n_paths: int, seed: int = 0):
    """Per-path quadratic losses on two parameters (shapes (3,) and (2, 2)) with a
    coupling term, as plain python numbers: loss_p(w) = sum a_p (w - c_p)^2 + (sum w1 * sum w2)^2."""
    rng = random.Random(seed)
    a = [[rng.uniform(0.1, 2.0) for _ in range(7)] for _ in range(n_paths)]
    c = [[rng.gauss(0, 1) for _ in range(7)] for _ in range(n_paths)]
    w0 = [rng.gauss(0, 1) for _ in range(7)]
    return a, c, w0


def py_grad(w: list[float], a: list[float], c: list[float], scale: float) -> list[float]:
    s1, s2 = sum(w[:3]), sum(w[3:])
    g = [2 * a[i] * (w[i] - c[i]) for i in range(7)]
    for i in range(3):
        g[i] += 2 * s1 * s2 * s2
    for i in range(3, 7):
        g[i] += 2 * s1 * s1 * s2
    return [scale * x for x in g]


def torch_loss(w1, w2, a, c, scale):
    a = torch.tensor(a, dtype=w1.dtype)
    c = torch.tensor(c, dtype=w1.dtype)
    w = torch.cat([w1, w2.reshape(-1)])
    return scale * ((a * (w - c) ** 2).sum() + (w1.sum() * w2.sum()) ** 2)


def written_out(kind, paths, n_paths, *, lr, betas, eps, eps_mode, weight_decay, scale, seed=0):
    """The paper's equations, element by element in python floats, two parameters
    (weights 0-2 and 3-6) with their own step counters and gradient scales."""
    use_adam, use_saga = FLAGS[kind]
    a, c, w = quad_problem(n_paths, seed)
    w = list(w)
    b1, b2 = betas
    groups = [range(0, 3), range(3, 7)]
    m, v, tau, ghat, s_first = {}, {}, {}, {}, [0.0, 0.0]
    traj = []
    for k, p in enumerate(paths, start=1):
        g = py_grad(w, a[p], c[p], scale)
        gcur = list(g)
        if use_adam:
            tp = tau.get(p, 0)
            b1p, b2p = b1 ** ((k - tp) / n_paths), b2 ** ((k - tp) / n_paths)
            mp = m.get(p, [0.0] * 7)
            vp = v.get(p, [0.0] * 7)
            mp = [b1p * mp[i] + (1 - b1p) * g[i] for i in range(7)]
            vp = [b2p * vp[i] + (1 - b2p) * g[i] * g[i] for i in range(7)]
            m[p], v[p], tau[p] = mp, vp, k
            for gi, idx in enumerate(groups):
                if eps_mode == "relative":
                    if s_first[gi] == 0.0:
                        s_first[gi] = math.sqrt(sum(g[i] ** 2 for i in idx) / len(idx))
                    e = eps * s_first[gi] ** 2
                else:
                    e = eps
                for i in idx:
                    gcur[i] = (mp[i] / (1 - b1 ** (k / n_paths))) / math.sqrt(e + vp[i] / (1 - b2 ** (k / n_paths)))
        d = list(gcur)
        if use_saga:
            seen = list(ghat)  # G before adding p
            avg = [sum(ghat[q][i] for q in seen) / max(1, len(seen)) for i in range(7)]
            old = ghat.get(p, [0.0] * 7)
            d = [gcur[i] - old[i] + avg[i] for i in range(7)]
            ghat[p] = gcur
        w = [w[i] - lr * (d[i] + weight_decay * w[i]) for i in range(7)]
        traj.append(list(w))
    return traj


def run_torch(kind, paths, n_paths, *, dtype=torch.float64, state_dtype="float64", scale=1.0, seed=0, **kw):
    a, c, w0 = quad_problem(n_paths, seed)
    w1 = torch.nn.Parameter(torch.tensor(w0[:3], dtype=dtype))
    w2 = torch.nn.Parameter(torch.tensor(w0[3:], dtype=dtype).reshape(2, 2))
    opt = CLASSES[kind]([w1, w2], n_paths, state_dtype=state_dtype, **kw)
    traj = []
    for p in paths:
        opt.zero_grad()
        torch_loss(w1, w2, a[p], c[p], scale).backward()
        opt.step(path=p)
        traj.append(torch.cat([w1.detach(), w2.detach().reshape(-1)]).tolist())
    return traj, opt


def random_paths(n_steps: int, n_paths: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [int(i) for i in torch.randint(0, n_paths, (n_steps,), generator=g)]


class TinyNet(torch.nn.Module):
    def __init__(self, seed: int = 0, dtype=torch.float32):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(4, 8).to(dtype)
        self.l2 = torch.nn.Linear(8, 3).to(dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x)))


def path_loss(net, x, path, scale=1.0):
    """A loss whose gradient depends on the path (like a per-path distance)."""
    y = net(x)
    target = torch.sin(torch.arange(3, dtype=x.dtype) + path)
    return scale * ((y - target) ** 2).mean() * (1.0 + 0.3 * path)


def make_data(n_steps, seed=0, batch=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 4, generator=g) for _ in range(n_steps)]


def params_of(net):
    return [p.detach().clone() for p in net.parameters()]


# --------------------------------------------------------------------------- equations
@pytest.mark.parametrize("kind", ["p_adam_saga", "p_adam", "p_saga"])
@pytest.mark.parametrize("eps_mode", ["absolute", "relative"])
def test_matches_written_out_equations(kind, eps_mode):
    n_paths, paths = 5, random_paths(16, 5, seed=3)
    assert len(set(paths)) < len(paths)  # paths repeat: exercises tau and the SAGA average
    hyper = dict(lr=0.05, betas=(0.8, 0.99), eps=1e-3, eps_mode=eps_mode, weight_decay=0.1)
    if kind == "p_saga":
        hyper = dict(lr=0.05, weight_decay=0.1)
    want = written_out(kind, paths, n_paths, scale=1.0, **{"betas": (0.8, 0.99), "eps": 1e-3, "eps_mode": eps_mode, **hyper})
    got, _ = run_torch(kind, paths, n_paths, **hyper)
    for step, (g, w) in enumerate(zip(got, want)):
        for gi, wi in zip(g, w):
            assert gi == pytest.approx(wi, rel=1e-11, abs=1e-12), f"step {step + 1}"


def test_absolute_mode_is_paper_formula_with_tiny_gradients():
    # With gradients ~1e-8 the paper's eps=1e-8 dominates sqrt(v): the update is tiny.
    n_paths, paths = 4, random_paths(10, 4, seed=5)
    hyper = dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, eps_mode="absolute", weight_decay=0.0)
    want = written_out("p_adam_saga", paths, n_paths, scale=1e-8, **hyper)
    got, _ = run_torch("p_adam_saga", paths, n_paths, scale=1e-8, **hyper)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-11, abs=1e-14)
    a, c, w0 = quad_problem(n_paths)
    assert max(abs(x - y) for x, y in zip(got[-1], w0)) < 1e-2  # swamped by eps


def test_float32_default_state_close_to_written_out():
    n_paths, paths = 6, random_paths(12, 6, seed=9)
    hyper = dict(lr=0.02, betas=(0.9, 0.999), eps=1e-8, eps_mode="relative", weight_decay=0.0)
    want = written_out("p_adam_saga", paths, n_paths, scale=1.0, **hyper)
    got, _ = run_torch("p_adam_saga", paths, n_paths, dtype=torch.float32, state_dtype="float32", **hyper)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-5, abs=1e-6)


def test_saga_uses_paper_average_not_reference_divisor():
    # Path 0 twice, then path 1: at step 2, G = {0}, |G| = 1 (the reference would use max(1, 0)).
    # At step 3 (new path 1), G = {0}: average = g_hat_0 / 1.
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = O.PSAGA([w], 3, lr=1.0, state_dtype="float64")
    grads = [(0, 1.0), (0, 3.0), (2, 10.0), (0, 5.0)]
    expected = []
    ghat: dict[int, float] = {}
    wv = 0.0
    for p, g in grads:
        avg = sum(ghat.values()) / max(1, len(ghat))
        wv -= g - ghat.get(p, 0.0) + avg
        ghat[p] = g
        expected.append(wv)
    for (p, g), e in zip(grads, expected):
        w.grad = torch.tensor([g], dtype=torch.float64)
        opt.step(path=p)
        assert w.item() == pytest.approx(e, abs=1e-12)
    # step 4 (path 0 seen, G = {0, 2}): divisor 2, the reference would use 1.
    assert expected[-1] == pytest.approx(-1 - (3 - 1 + 1) - (10 - 0 + 3) - (5 - 3 + 6.5))


def test_running_sum_matches_stored_rows():
    paths = random_paths(40, 7, seed=11)
    _, opt = run_torch("p_adam_saga", paths, 7, lr=0.01, betas=(0.9, 0.999), eps=1e-8, eps_mode="relative")
    for st in opt.state.values():
        total = sum(st["g_hat"].values())
        torch.testing.assert_close(st["g_sum"], total, rtol=1e-12, atol=1e-12)
        assert sorted(st["g_hat"]) == sorted(set(paths))
        assert st["step"] == len(paths)
        assert st["tau"] == {p: max(i + 1 for i, q in enumerate(paths) if q == p) for p in set(paths)}


def test_p_adam_first_visit_and_scalars():
    sc = F.p_adam_scalars(step=7, last_step=3, n_paths=4, beta1=0.9, beta2=0.999)
    assert sc.decay1 == pytest.approx(0.9 ** 1.0)
    assert sc.one_minus_decay2 == pytest.approx(1 - 0.999 ** 1.0, rel=1e-12)
    assert sc.bias1 == pytest.approx(1 - 0.9 ** (7 / 4), rel=1e-14)
    assert F.p_adam_scalars(1, 0, 315, 0.0, 0.0).decay1 == 0.0
    with pytest.raises(ValueError, match="step"):
        F.p_adam_scalars(0, 0, 4, 0.9, 0.999)
    with pytest.raises(ValueError, match="last_step"):
        F.p_adam_scalars(3, 4, 4, 0.9, 0.999)


# --------------------------------------------------------------------------- scale invariance
def train(kind="p_adam_saga", n_steps=20, scale=1.0, n_paths=6, seed=0, net_seed=0, opt_kw=None, path_seed=1):
    net = TinyNet(net_seed)
    opt = CLASSES[kind](net.parameters(), n_paths, lr=1e-2, **(opt_kw or {}))
    xs = make_data(n_steps, seed)
    paths = random_paths(n_steps, n_paths, path_seed)
    for x, p in zip(xs, paths):
        opt.zero_grad()
        path_loss(net, x, p, scale).backward()
        opt.step(path=p)
    return net, opt


@pytest.mark.parametrize("kind", ["p_adam_saga", "p_adam"])
def test_default_trajectory_invariant_to_loss_scale(kind):
    net_a, _ = train(kind, scale=1.0)
    net_b, _ = train(kind, scale=1e-8)
    net0 = TinyNet(0)
    moved = max((a - b).abs().max().item() for a, b in zip(params_of(net_a), params_of(net0)))
    assert moved > 1e-2  # it trained
    for a, b in zip(params_of(net_a), params_of(net_b)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_absolute_eps_is_not_scale_invariant():
    net_a, _ = train(scale=1.0, opt_kw={"eps_mode": "absolute"})
    net_b, _ = train(scale=1e-8, opt_kw={"eps_mode": "absolute"})
    diff = max((a - b).abs().max().item() for a, b in zip(params_of(net_a), params_of(net_b)))
    assert diff > 1e-2


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(
    "kind,kw",
    [
        ("p_adam_saga", {}),
        ("p_adam", {"eps_mode": "absolute"}),
        ("p_saga", {"weight_decay": 0.01}),
        ("p_adam_saga", {"state_dtype": "bfloat16", "state_device": "cpu"}),
    ],
)
def test_checkpoint_resume_is_bit_identical(kind, kw):
    n_paths, n1, n2 = 5, 9, 8
    xs = make_data(n1 + n2, seed=4)
    paths = random_paths(n1 + n2, n_paths, seed=6)

    def steps(net, opt, idx):
        for i in idx:
            opt.zero_grad()
            path_loss(net, xs[i], paths[i]).backward()
            opt.step(path=paths[i])

    net = TinyNet(2)
    opt = CLASSES[kind](net.parameters(), n_paths, lr=1e-2, **kw)
    steps(net, opt, range(n1))
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "optim": opt.state_dict()}, buf)
    steps(net, opt, range(n1, n1 + n2))

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    net2 = TinyNet(99)
    net2.load_state_dict(ckpt["model"])
    opt2 = CLASSES[kind](net2.parameters(), n_paths, lr=1e-2, **kw)
    opt2.load_state_dict(ckpt["optim"])
    steps(net2, opt2, range(n1, n1 + n2))
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    for p, q in zip(net.parameters(), net2.parameters()):
        s1, s2 = opt.state[p], opt2.state[q]
        assert s1.keys() == s2.keys()
        for key in s1:
            if isinstance(s1[key], dict):
                assert s1[key].keys() == s2[key].keys()
                for i in s1[key]:
                    x, y = s1[key][i], s2[key][i]
                    assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
            elif isinstance(s1[key], torch.Tensor):
                assert torch.equal(s1[key], s2[key])
            else:
                assert s1[key] == s2[key]


def test_state_dict_holds_only_plain_types():
    _, opt = train(n_steps=5, opt_kw={"state_dtype": "bfloat16"})
    allowed = (torch.Tensor, int, float, str, bool, type(None))

    def check(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                assert isinstance(k, (int, str)), type(k)
                check(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                check(v)
        else:
            assert isinstance(obj, allowed), type(obj)

    check(opt.state_dict())
    st = next(iter(opt.state.values()))
    assert all(r.dtype == torch.bfloat16 for r in st["m"].values())
    assert st["g_sum"].dtype == torch.float32


def test_load_keeps_state_dtype_not_param_dtype():
    _, opt = train(n_steps=4, opt_kw={"state_dtype": "bfloat16"})
    sd = opt.state_dict()
    net2 = TinyNet(0)
    opt2 = O.PAdamSAGA(net2.parameters(), 6, lr=1e-2, state_dtype="bfloat16")
    opt2.load_state_dict(sd)
    st = next(iter(opt2.state.values()))
    assert all(r.dtype == torch.bfloat16 for r in st["v"].values())
    assert all(isinstance(k, int) for k in st["tau"])


# --------------------------------------------------------------------------- path handling
def test_path_source_and_explicit_path():
    calls = []

    def source():
        calls.append(1)
        return 2

    w = torch.nn.Parameter(torch.ones(3))
    opt = O.PAdamSAGA([w], 4, path_source=source)
    w.grad = torch.ones(3)
    opt.step()
    assert len(calls) == 1 and opt.last_path == 2
    assert list(opt.state[w]["g_hat"]) == [2]
    w.grad = torch.ones(3)
    opt.step(path=1)  # explicit path wins, path_source not called
    assert len(calls) == 1 and sorted(opt.state[w]["g_hat"]) == [1, 2]


def test_missing_or_bad_path_errors():
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    with pytest.raises(ValueError, match="no path"):
        O.PAdamSAGA([w], 4).step()
    with pytest.raises(ValueError, match="returned None"):
        O.PAdamSAGA([w], 4, path_source=lambda: None).step()
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        O.PAdamSAGA([w], 4).step(path=4)
    with pytest.raises(TypeError, match="path"):
        O.PAdamSAGA([w], 4).step(path=1.5)
    with pytest.raises(TypeError, match="path"):
        O.PAdamSAGA([w], 4).step(path=True)
    O.PAdamSAGA([w], 4).step(path=torch.tensor(3))  # 0-dim int tensors are fine


def test_closure_runs_before_path_lookup():
    net = TinyNet(0)
    x = make_data(1)[0]
    state = {"path": None}

    def closure():
        state["path"] = 3  # the loss forward draws the path
        net.zero_grad()
        loss = path_loss(net, x, 3)
        loss.backward()
        return loss

    opt = O.PAdamSAGA(net.parameters(), 5, path_source=lambda: state["path"])
    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and opt.last_path == 3


def test_params_without_grad_are_skipped():
    a = torch.nn.Parameter(torch.ones(2))
    b = torch.nn.Parameter(torch.ones(2))
    opt = O.PAdamSAGA([a, b], 3)
    a.grad = torch.ones(2)
    opt.step(path=0)
    assert b not in opt.state and torch.equal(b, torch.ones(2))
    assert opt.state[a]["step"] == 1


# --------------------------------------------------------------------------- torch machinery
def test_grad_scaler_gives_same_trajectory():
    n_steps, n_paths = 8, 4
    xs = make_data(n_steps, seed=7)
    paths = random_paths(n_steps, n_paths, seed=8)

    def run(use_scaler):
        net = TinyNet(1)
        opt = O.PAdamSAGA(net.parameters(), n_paths, lr=1e-2)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12) if use_scaler else None
        for x, p in zip(xs, paths):
            opt.zero_grad()
            loss = path_loss(net, x, p)
            if scaler is None:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
                opt.step(path=p)
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
                scaler.step(opt, path=p)
                scaler.update()
        return net, opt

    net_a, _ = run(False)
    net_b, _ = run(True)
    for a, b in zip(params_of(net_a), params_of(net_b)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_grad_scaler_skips_inf_step_without_touching_state():
    net = TinyNet(0)
    calls = []
    opt = O.PAdamSAGA(net.parameters(), 4, lr=1e-2, path_source=lambda: calls.append(1) or 1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    x = make_data(1)[0]
    before = params_of(net)
    scaler.scale(path_loss(net, x, 1)).backward()
    next(net.parameters()).grad[0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    assert calls == [] and len(opt.state) == 0
    for a, b in zip(before, params_of(net)):
        assert torch.equal(a, b)


def test_gradient_accumulation_equals_summed_gradient():
    n_steps, n_paths = 6, 3
    xs = make_data(2 * n_steps, seed=2)
    paths = random_paths(n_steps, n_paths, seed=2)
    net_a, net_b = TinyNet(5), TinyNet(5)
    opt_a = O.PAdamSAGA(net_a.parameters(), n_paths, lr=1e-2)
    opt_b = O.PAdamSAGA(net_b.parameters(), n_paths, lr=1e-2)
    for i, p in enumerate(paths):
        opt_a.zero_grad()
        path_loss(net_a, xs[2 * i], p).backward()  # micro-batch 1
        path_loss(net_a, xs[2 * i + 1], p).backward()  # micro-batch 2
        opt_a.step(path=p)
        opt_b.zero_grad()
        (path_loss(net_b, xs[2 * i], p) + path_loss(net_b, xs[2 * i + 1], p)).backward()
        opt_b.step(path=p)
    for a, b in zip(params_of(net_a), params_of(net_b)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert opt_a.state[next(net_a.parameters())]["step"] == n_steps


def test_add_param_group_and_lr_scheduler():
    n_paths = 4
    paths = random_paths(10, n_paths, seed=1)
    xs = make_data(10, seed=1)

    def run(use_scheduler):
        net = TinyNet(3)
        opt = O.PAdamSAGA(net.l1.parameters(), n_paths, lr=1e-2)
        opt.add_param_group({"params": net.l2.parameters(), "lr": 5e-3, "weight_decay": 0.1})
        assert opt.param_groups[1]["betas"] == (0.9, 0.999)  # defaults filled in
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5) if use_scheduler else None
        for i, (x, p) in enumerate(zip(xs, paths)):
            if not use_scheduler:
                opt.param_groups[0]["lr"] = 1e-2 * 0.5 ** (i // 3)
                opt.param_groups[1]["lr"] = 5e-3 * 0.5 ** (i // 3)
            opt.zero_grad()
            path_loss(net, x, p).backward()
            opt.step(path=p)
            if sched is not None:
                sched.step()
        return net, opt

    net_a, opt_a = run(True)
    net_b, _ = run(False)
    for a, b in zip(params_of(net_a), params_of(net_b)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(opt_a.state) == 4
    assert opt_a.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**3)
    with pytest.raises(ValueError, match="state_dtype"):
        opt_a.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "state_dtype": "int8"})


def test_clip_grad_norm_acts_on_what_the_optimizer_sees():
    # P-SAGA is linear in the gradient: clipping by factor c scales the first step by c.
    w1 = torch.nn.Parameter(torch.zeros(4))
    w2 = torch.nn.Parameter(torch.zeros(4))
    g = torch.tensor([3.0, 4.0, 0.0, 0.0])
    for w in (w1, w2):
        w.grad = g.clone()
    torch.nn.utils.clip_grad_norm_([w1], max_norm=1.0)
    O.PSAGA([w1], 3, lr=1.0).step(path=0)
    O.PSAGA([w2], 3, lr=1.0).step(path=0)
    torch.testing.assert_close(w1.detach(), -g / 5.0)
    torch.testing.assert_close(w2.detach(), -g)


def test_weight_decay_decoupled_from_p_adam():
    w = torch.nn.Parameter(torch.full((3,), 2.0, dtype=torch.float64))
    w.grad = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
    O.PAdam([w], 4, lr=0.1, weight_decay=0.5, state_dtype="float64").step(path=0)
    # g_cur = g / sqrt(eps_eff + g^2) ~ sign(g); w <- w - lr (g_cur + wd w)
    torch.testing.assert_close(w.detach(), torch.tensor([2 - 0.1 * (1 + 1), 2 - 0.1 * (-1 + 1), 2 - 0.1], dtype=torch.float64), rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- memory, dtypes, devices
def test_lazy_state_memory_and_repr():
    n_paths = 50
    w = torch.nn.Parameter(torch.zeros(1000))
    opt = O.PAdamSAGA([w], n_paths, lr=1e-3)
    assert opt.state_bytes() == 0
    for i, p in enumerate([3, 3, 7]):
        w.grad = torch.randn(1000)
        opt.step(path=p)
    # 2 paths seen, 3 buffers of 1000 float32 each, plus the running sum
    assert opt.state_bytes() == 2 * 3 * 1000 * 4 + 1000 * 4
    assert opt.max_state_bytes() == n_paths * 3 * 1000 * 4 + 1000 * 4
    r = repr(opt)
    assert "P-Adam+SAGA(P=50" in r and "weights=1,000" in r and "paths seen=2" in r and "at most=" in r
    assert "lr=0.001" in r
    assert O.PAdam([w], n_paths).max_state_bytes() == n_paths * 2 * 1000 * 4
    assert O.PSAGA([w], n_paths, state_dtype="bfloat16").max_state_bytes() == n_paths * 1000 * 2 + 1000 * 4


def test_bfloat16_state_keeps_sum_consistent_and_stays_close():
    net_a, opt_a = train(n_steps=20)
    net_b, opt_b = train(n_steps=20, opt_kw={"state_dtype": "bfloat16"})
    for st in opt_b.state.values():
        assert all(r.dtype == torch.bfloat16 for r in st["g_hat"].values())
        exact = sum(r.double() for r in st["g_hat"].values())
        torch.testing.assert_close(st["g_sum"].double(), exact, rtol=1e-5, atol=1e-5)
    for a, b in zip(params_of(net_a), params_of(net_b)):
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.02)
    assert opt_b.state_bytes() < opt_a.state_bytes()


def test_state_device_cpu_option():
    w = torch.nn.Parameter(torch.zeros(5))
    opt = O.PAdamSAGA([w], 3, state_device="cpu")
    w.grad = torch.ones(5)
    opt.step(path=1)
    assert opt.state[w]["m"][1].device.type == "cpu"
    with pytest.raises(ValueError, match="state_device"):
        O.PAdamSAGA([w], 3, state_device="nonsense")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_state_on_cpu_while_model_on_gpu():
    paths = random_paths(10, 4, seed=0)
    res = []
    for dev in (None, "cpu"):
        w = torch.nn.Parameter(torch.linspace(-1, 1, 64, device="cuda"))
        opt = O.PAdamSAGA([w], 4, lr=1e-2, state_device=dev)
        for p in paths:
            w.grad = torch.sin(w.detach() * (p + 1))
            opt.step(path=p)
        if dev == "cpu":
            assert opt.state[w]["m"][paths[0]].device.type == "cpu"
        res.append(w.detach().cpu())
    torch.testing.assert_close(res[0], res[1])


def test_half_and_complex_parameters():
    w = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    opt = O.PAdamSAGA([w], 3, lr=0.25)
    w.grad = torch.ones(4, dtype=torch.bfloat16)
    opt.step(path=0)
    assert w.dtype == torch.bfloat16 and torch.allclose(w.float(), torch.full((4,), 0.75), atol=1e-2)
    assert opt.state[w]["g_sum"].dtype == torch.float32
    z = torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))
    zr = torch.nn.Parameter(torch.zeros(2, 2))
    oz, ozr = O.PAdamSAGA([z], 3, lr=0.1), O.PAdamSAGA([zr], 3, lr=0.1)
    for p, g in [(0, [1 + 2j, -3j]), (1, [0.5, 1 - 1j]), (0, [2, 1j])]:
        z.grad = torch.tensor(g, dtype=torch.complex64)
        zr.grad = torch.view_as_real(z.grad).clone()
        oz.step(path=p)
        ozr.step(path=p)
    torch.testing.assert_close(torch.view_as_real(z.detach()), zr.detach())


def test_sparse_gradients_rejected():
    w = torch.nn.Parameter(torch.zeros(3))
    w.grad = torch.zeros(3).to_sparse()
    with pytest.raises(TypeError, match="sparse"):
        O.PAdamSAGA([w], 3).step(path=0)


# --------------------------------------------------------------------------- plugins, configs, factories
def test_plugins_list_and_configs():
    assert [s.name for s in O.PLUGINS] == ["p_adam_saga", "p_adam", "p_saga", "sgd"]
    for spec in O.PLUGINS:
        assert isinstance(spec, PluginSpec) and spec.kind == "optimizer"
        cfg = spec.config_cls()
        assert cfg.name == spec.name
        w = torch.nn.Parameter(torch.zeros(2))
        opt = spec.factory(cfg, [w], n_paths=7, path_source=lambda: 1)
        assert isinstance(opt, PathAwareOptimizer) and isinstance(opt, torch.optim.Optimizer)
        assert opt.n_paths == 7
        w.grad = torch.ones(2)
        opt.step()
        assert opt.last_path == 1


def test_factory_overrides_win_and_are_validated():
    cfg = O.PAdamSAGAConfig(lr=0.5, betas=(0.8, 0.9))
    w = torch.nn.Parameter(torch.zeros(2))
    opt = O.make_p_adam_saga(cfg, [w], n_paths=3, path_source=None, lr=0.01, state_dtype="bfloat16")
    g = opt.param_groups[0]
    assert g["lr"] == 0.01 and g["betas"] == (0.8, 0.9) and g["state_dtype"] == "bfloat16"
    with pytest.raises(ValidationError, match="momentum"):
        O.make_p_adam_saga(cfg, [w], n_paths=3, path_source=None, momentum=0.9)
    with pytest.raises(ValidationError, match="lr"):
        O.make_p_adam_saga(cfg, [w], n_paths=3, path_source=None, lr=-1.0)
    opt = O.make_p_saga({"lr": 0.2}, [w], n_paths=3, path_source=None)
    assert opt.param_groups[0]["lr"] == 0.2
    with pytest.raises(ValueError, match="name"):
        O.make_p_adam(O.PAdamConfig(), [w], n_paths=3, path_source=None, name="sgd")
    with pytest.raises(TypeError, match="config"):
        O.make_sgd(42, [w], n_paths=3, path_source=None)


def test_config_validation_messages():
    with pytest.raises(ValidationError, match=r"betas\[1\]"):
        O.PAdamSAGAConfig(betas=(0.9, 1.0))
    with pytest.raises(ValidationError, match="eps_mode"):
        O.PAdamConfig(eps_mode="loose")
    with pytest.raises(ValidationError, match="state_device"):
        O.PSAGAConfig(state_device="gpu0")
    with pytest.raises(ValidationError, match="extra"):
        O.PAdamSAGAConfig(lrr=0.1)
    with pytest.raises(ValidationError, match="nesterov"):
        O.SGDConfig(nesterov=True)
    assert O.PAdamSAGAConfig.model_validate_json(O.PAdamSAGAConfig(lr=0.3).model_dump_json()).lr == 0.3
    with pytest.raises(ValueError, match="n_paths"):
        O.PAdamSAGA([torch.nn.Parameter(torch.zeros(1))], 0)
    with pytest.raises(ValueError, match="eps_mode"):
        O.PAdam([torch.nn.Parameter(torch.zeros(1))], 3, eps_mode="x")
    with pytest.raises(TypeError, match="path_source"):
        O.PAdam([torch.nn.Parameter(torch.zeros(1))], 3, path_source=5)


def test_path_sgd_matches_torch_sgd():
    net_a, net_b = TinyNet(4), TinyNet(4)
    calls = []
    opt_a = O.PathSGD(net_a.parameters(), 5, path_source=lambda: calls.append(1), lr=0.1, momentum=0.9, weight_decay=1e-3)
    opt_b = torch.optim.SGD(net_b.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for i, x in enumerate(make_data(5)):
        for net, opt in ((net_a, opt_a), (net_b, opt_b)):
            opt.zero_grad()
            path_loss(net, x, i % 5).backward()
            opt.step()
    assert len(calls) == 5 and opt_a.last_path is None
    for a, b in zip(params_of(net_a), params_of(net_b)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="path"):
        opt_a.step(path=5)
    sd = opt_a.state_dict()
    opt_c = O.PathSGD(TinyNet(4).parameters(), 5, lr=0.1, momentum=0.9)
    opt_c.load_state_dict(sd)
    assert "PathSGD(P=5)" in repr(opt_c)


def test_docstring_examples():
    import doctest

    import scrapl.compat.hooks as H
    import scrapl.optim.p_adam as PA

    for mod in (PA, H):
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert res.failed == 0 and res.attempted > 0


def test_zero_first_gradient_then_scale_recorded():
    w = torch.nn.Parameter(torch.ones(4))
    opt = O.PAdamSAGA([w], 3, lr=0.1)
    w.grad = torch.zeros(4)
    opt.step(path=0)
    assert opt.state[w]["grad_scale"] == 0.0 and torch.equal(w.detach(), torch.ones(4))
    w.grad = torch.tensor([2.0, -2.0, 2.0, -2.0])
    opt.step(path=1)
    assert opt.state[w]["grad_scale"] == pytest.approx(2.0)
    assert torch.isfinite(w).all()


def test_load_state_from_other_path_optimizer_and_group_keys():
    w = torch.nn.Parameter(torch.ones(3))
    a = O.PAdam([w], 4)
    w.grad = torch.ones(3)
    a.step(path=1)
    b = O.PAdamSAGA([w], 4)
    b.load_state_dict(a.state_dict())
    assert b.state[w]["g_hat"] == {} and 1 in b.state[w]["m"]
    w.grad = torch.ones(3)
    b.step(path=1)
    assert b.state[w]["step"] == 2 and list(b.state[w]["g_hat"]) == [1]
    assert "betas" not in O.PSAGA([w], 4).param_groups[0]


def test_docs_examples_run():
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "optim.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) >= 4
    for i, code in enumerate(blocks):
        exec(compile(code, f"{doc.name}[{i}]", "exec"), {})
