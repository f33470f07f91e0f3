"""Reliability item: state from another configuration is refused, validated as a
whole before any of it is applied (optimizer states, loss checkpoints)."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import scrapl
from scrapl import optim as O
from scrapl.compat import SCRAPLLoss

CFG = {"name": "jtfs", "shape": 1024, "J": 4, "Q1": 2, "Q2": 1, "J_fr": 2, "Q_fr": 1}  # 14 paths


def _trained(cls: type, n_paths: int, paths: list[int], **kw: object) -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6).reshape(2, 3))
    opt = cls([w], n_paths, lr=0.1, **kw)
    for i, p in enumerate(paths):
        w.grad = torch.full_like(w, 0.5 + i)
        opt.step(path=p)
    return w, opt


def _roundtrip(sd: dict) -> dict:
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _snapshot(opt: torch.optim.Optimizer) -> dict:
    return copy.deepcopy(opt.state_dict())


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.is_floating_point() and a.shape == b.shape and a.dtype == b.dtype:  # NaN curvatures equal
            return bool(torch.isclose(a, b, rtol=0.0, atol=0.0, equal_nan=True).all())
        return torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("cls", [O.PAdam, O.PSAGA, O.PAdamSAGA])
def test_optimizer_state_for_another_p_is_refused_both_ways(cls: type) -> None:
    _, big = _trained(cls, 28, [3, 20, 27])
    _, small = _trained(cls, 7, [1, 2])
    before = _snapshot(small)
    with pytest.raises(ValueError, match="n_paths=28.*n_paths=7"):
        small.load_state_dict(_roundtrip(big.state_dict()))
    assert _same(_snapshot(small), before)
    with pytest.raises(ValueError, match="n_paths=7.*n_paths=28"):
        big.load_state_dict(small.state_dict())


def test_state_without_n_paths_record_is_checked_row_by_row() -> None:
    _, big = _trained(O.PAdamSAGA, 28, [3, 20])
    sd = big.state_dict()
    del sd["n_paths"]  # as saved before the record existed
    _, small = _trained(O.PAdamSAGA, 7, [1])
    before = _snapshot(small)
    with pytest.raises(ValueError, match=r"holds path 20, outside \[0, 7\)"):
        small.load_state_dict(sd)
    assert _same(_snapshot(small), before)


def test_rows_of_the_wrong_shape_are_refused_before_anything_is_applied() -> None:
    _, a = _trained(O.PAdamSAGA, 7, [1, 4])
    sd = a.state_dict()
    sd["state"][0]["g_hat"][4] = torch.zeros(5)
    _, b = _trained(O.PAdamSAGA, 7, [2])
    before = _snapshot(b)
    with pytest.raises(ValueError, match=r"\['g_hat'\]\[4\] must be a tensor of shape \(2, 3\)"):
        b.load_state_dict(sd)
    assert _same(_snapshot(b), before)
    sd = a.state_dict()
    sd["state"][0]["m"]["x"] = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="non-integer path 'x'"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[0\]: lr"):
        b.load_state_dict(sd)
    assert _same(_snapshot(b), before)


def test_path_optimizer_state_into_sgd_and_back_names_the_mismatch() -> None:
    _, p = _trained(O.PAdamSAGA, 7, [1])
    w, sgd = _trained(O.PathSGD, 7, [1], momentum=0.9)
    before = _snapshot(sgd)
    with pytest.raises(ValueError, match="lacks .*momentum.*not by sgd"):
        sgd.load_state_dict(p.state_dict())
    assert _same(_snapshot(sgd), before)
    w.grad = torch.ones_like(w)
    sgd.step(path=0)  # still usable (before: KeyError 'momentum' here)
    with pytest.raises(ValueError, match="lacks .*not a path-aware one"):
        p.load_state_dict(sgd.state_dict())
    with pytest.raises(ValueError, match="n_paths=7.*n_paths=9"):
        O.PathSGD([torch.nn.Parameter(torch.zeros(2, 3))], 9).load_state_dict(sgd.state_dict())


def test_torch_adam_state_into_p_adam_is_refused() -> None:
    w = torch.nn.Parameter(torch.ones(2, 3))
    adam = torch.optim.Adam([w], lr=0.1)
    w.grad = torch.ones_like(w)
    adam.step()
    _, p = _trained(O.PAdam, 7, [1])
    before = _snapshot(p)
    with pytest.raises(ValueError, match="lacks .*not a path-aware one"):
        p.load_state_dict(adam.state_dict())
    assert _same(_snapshot(p), before)


def test_group_and_parameter_counts_are_checked() -> None:
    _, a = _trained(O.PAdam, 7, [1])
    w1, w2 = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(2, 3))
    with pytest.raises(ValueError, match="has 1 parameters, this optimizer.s has 2"):
        O.PAdam([w1, w2], 7).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="2 parameter groups"):
        O.PAdam([w1], 7).load_state_dict({**a.state_dict(), "param_groups": a.state_dict()["param_groups"] * 2})
    with pytest.raises(ValueError, match="missing"):
        O.PAdam([w1], 7).load_state_dict({"state": {}})


def test_valid_state_still_roundtrips_and_cross_loads() -> None:
    w, a = _trained(O.PAdamSAGA, 7, [1, 4, 1])
    w2 = torch.nn.Parameter(w.detach().clone())
    b = O.PAdamSAGA([w2], 7, lr=0.1)
    b.load_state_dict(_roundtrip(a.state_dict()))
    for opt, p in ((a, w), (b, w2)):
        p.grad = torch.ones_like(p)
        opt.step(path=4)
    assert torch.equal(w, w2)
    O.PAdamSAGA([torch.nn.Parameter(torch.ones(2, 3))], 7).load_state_dict(_trained(O.PAdam, 7, [2])[1].state_dict())


# --------------------------------------------------------------------------- loss checkpoints
def _theta_is(min_prob_frac: float, seed: int = 0) -> scrapl.Built:
    built = scrapl.build({"transform": CFG, "sampler": {"name": "theta_is", "n_theta": 1, "min_prob_frac": min_prob_frac},
                          "seed": seed})
    vals = torch.linspace(1.0, 50.0, built.transform.n_paths, dtype=torch.float64).unsqueeze(1)
    built.sampler.set_curvatures(vals)
    return built


def test_checkpoint_probabilities_never_override_the_configured_floor() -> None:
    src = _theta_is(0.0)
    dst = _theta_is(0.5, seed=3)
    probs_before = dst.loss.probs.clone()
    gen_before = dst.sampler.generator.get_state()
    with pytest.raises(ValueError, match="min_prob_frac=0.0.*min_prob_frac=0.5"):
        dst.loss.load_state_dict(src.loss.state_dict())
    assert torch.equal(dst.loss.probs, probs_before)
    assert torch.equal(dst.sampler.generator.get_state(), gen_before)
    # a state without the record (e.g. hand-made) is checked against the floor itself
    sd = src.loss.state_dict()
    del sd["_extra_state"]["sampler"]["min_prob_frac"]
    with pytest.raises(ValueError, match="below this sampler's floor"):
        dst.loss.load_state_dict(sd)
    assert torch.equal(dst.loss.probs, probs_before)
    same = _theta_is(0.5, seed=4)
    same.loss.load_state_dict(dst.loss.state_dict())  # same floor: loads
    assert torch.equal(same.loss.probs, dst.loss.probs)


def _trained_loss(seed: int) -> scrapl.Built:
    built = _theta_is(0.1, seed=seed)
    x, y = torch.randn(2, 1, 1024), torch.randn(2, 1, 1024)
    for _ in range(3):
        built.loss(x, y)
    return built


@pytest.mark.parametrize("edit", ["scrapl_t", "path_counts", "curr_path_idx", "missing"])
def test_hand_edited_extra_state_is_not_half_applied(edit: str) -> None:
    src, dst = _trained_loss(1), _trained_loss(2)
    sd = src.loss.state_dict()
    extra = sd["_extra_state"]
    if edit == "scrapl_t":
        extra["scrapl_t"] = "three"
    elif edit == "path_counts":
        extra["path_counts"] = {"a": 1}
    elif edit == "curr_path_idx":
        extra["curr_path_idx"] = 2.5
    else:
        del extra["path_counts"]
    before = copy.deepcopy(dst.loss.get_extra_state())
    with pytest.raises(ValueError, match="path tracker state"):
        dst.loss.load_state_dict(sd)
    assert _same(dst.loss.get_extra_state(), before)  # sampler (generator, probs) and tracker as they were


def test_drop_in_loss_with_hooks_is_all_or_nothing() -> None:
    kw = dict(shape=1024, J=4, Q1=2, Q2=1, J_fr=2, Q_fr=1)
    src, dst = SCRAPLLoss(**kw, seed=1), SCRAPLLoss(**kw, seed=2)
    w = torch.nn.Parameter(torch.ones(3))
    src.attach_params([w])
    dst.attach_params([torch.nn.Parameter(torch.ones(3))])
    x, y = torch.randn(2, 1, 1024), torch.randn(2, 1, 1024)
    src(x, y)
    dst(x, y)
    sd = src.state_dict()
    sd["_extra_state"]["hooks"]["n_paths"] = 99
    before = copy.deepcopy(dst.get_extra_state())
    with pytest.raises(ValueError, match="n_paths=99"):
        dst.load_state_dict(sd)
    assert _same(dst.get_extra_state(), before)
