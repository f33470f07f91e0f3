"""The drop-in's reference names against golden data of scrapl-loss 0.1.0
(tests/fixtures/compat_golden.pt, written by scripts/make_compat_golden.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import scrapl
from scrapl import SCRAPLLoss

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = torch.load(FIXTURES / "compat_golden.pt", weights_only=True)
KW = GOLDEN["kwargs"]


@pytest.fixture(scope="module")
def loss() -> SCRAPLLoss:
    return SCRAPLLoss(**KW)


def test_reference_module_paths() -> None:
    from scrapl.scrapl_loss import SCRAPLLoss as FromModule
    from scrapl.util import ReadOnlyTensorDict

    from scrapl.loss import SCRAPLLoss as FromLoss

    assert FromModule is SCRAPLLoss is FromLoss is scrapl.compat.SCRAPLLoss
    assert ReadOnlyTensorDict is scrapl.compat.ReadOnlyTensorDict


def test_scalar_attributes(loss: SCRAPLLoss) -> None:
    gold = GOLDEN["attrs"]
    for name in ("n_paths", "min_prob_frac", "eps", "sample_all_paths_first", "loaded_probs_path", "grad_mult"):
        assert getattr(loss, name) == gold[name], name
    assert SCRAPLLoss(**KW, min_prob_frac=0.25, eps=1e-9, sample_all_paths_first=True).min_prob_frac == 0.25


def test_jtfs_names(loss: SCRAPLLoss) -> None:
    gold = GOLDEN["attrs"]["jtfs"]
    j = loss.jtfs
    assert [list(j.Q), j.J, j.J_fr, list(j.Q_fr), j.T, j.F, list(j.shape)] == [
        gold["Q"], gold["J"], gold["J_fr"], gold["Q_fr"], gold["T"], gold["F"], gold["shape"]]
    assert j.Q[0] == KW["Q1"] and j.n_paths == loss.n_paths  # other names: the module's


def test_meta(loss: SCRAPLLoss) -> None:
    gold = GOLDEN["attrs"]["meta"]
    meta = loss.meta
    assert [list(k) for k in meta["key"]] == gold["key"]
    for column, values in gold.items():
        if column != "key":
            np.testing.assert_allclose(meta[column], values.numpy(), rtol=1e-6, atol=1e-9, equal_nan=True,
                                       err_msg=column)


@pytest.mark.parametrize("case", ["plain", "all_first"])
def test_global_seed_replays_reference_paths_and_construction_leaves_rng(case: str) -> None:
    x = torch.zeros(1, 1, KW["shape"])
    for seed, gold in GOLDEN["global_draws"][case].items():
        torch.manual_seed(seed)
        SCRAPLLoss(**KW, sample_all_paths_first=case == "all_first")
        torch.testing.assert_close(torch.rand(4), gold["after_init"], rtol=0, atol=0)  # untouched
        torch.manual_seed(seed)
        loss = SCRAPLLoss(**KW, sample_all_paths_first=case == "all_first")
        paths = []
        for _ in range(40):
            loss(x, x)
            paths.append(loss.curr_path_idx)
        assert paths == gold["paths"]


def test_building_any_loss_leaves_the_global_generator_untouched() -> None:
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    scrapl.build({"transform": {"name": "jtfs", **KW}, "seed": 5})
    SCRAPLLoss(**KW, seed=4)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_global_generator_state_is_not_checkpointed() -> None:
    a = SCRAPLLoss(**KW)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(9)
    expected = torch.rand(2)
    torch.manual_seed(9)
    SCRAPLLoss(**KW).load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(torch.rand(2), expected, rtol=0, atol=0)


def _check_log_state(loss: SCRAPLLoss, gold: dict) -> None:
    torch.testing.assert_close(loss.probs, gold["probs"], rtol=0, atol=1e-9)
    torch.testing.assert_close(loss.all_log_vals, gold["all_log_vals"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss.all_log_probs, gold["all_log_probs"], rtol=0, atol=1e-9)
    assert loss.all_log_vals.dtype == loss.all_log_probs.dtype == torch.float64
    assert loss.all_log_probs.shape == (loss.n_theta, loss.n_paths)


@pytest.mark.parametrize("name", sorted(GOLDEN["updates"]))
def test_update_prob_sequence_matches_reference(name: str) -> None:
    case = GOLDEN["updates"][name]
    loss = SCRAPLLoss(**KW, n_theta=case["n_theta"], min_prob_frac=case["min_prob_frac"])
    for (path_idx, val, theta_idx), gold in zip(case["calls"], case["steps"]):
        loss.update_prob(path_idx, val, theta_idx)
        _check_log_state(loss, gold)
    with pytest.raises(ValueError, match="theta_idx"):
        loss.update_prob(0, 1.0, case["n_theta"])
    with pytest.raises(ValueError, match="val"):
        loss.update_prob(0, -1.0, 0)


@pytest.mark.parametrize("name", sorted(GOLDEN["updates"]))
def test_all_log_probs_after_warmup_dir_match_reference(name: str, tmp_path: Path) -> None:
    case = GOLDEN["updates"][name]
    for p, v in case["warmup_vals"].items():
        torch.save(v, tmp_path / f"vals_{p}.pt")
    loss = SCRAPLLoss(**KW, n_theta=case["n_theta"], min_prob_frac=case["min_prob_frac"])
    loss.load_probs_from_warmup_dir(str(tmp_path))
    _check_log_state(loss, case["warmup"])
    assert loss.loaded_probs_path == str(tmp_path)
    with pytest.raises(ValueError, match="loaded"):
        loss.update_prob(0, 1.0)


def test_grad_mult_from_yaml_1_1_string() -> None:
    kwargs = yaml.safe_load("shape: 1024\nJ: 4\nQ1: 2\nQ2: 1\nJ_fr: 2\nQ_fr: 1\ngrad_mult: 1e8\n")
    assert kwargs["grad_mult"] == "1e8"  # YAML 1.1: not a float
    assert SCRAPLLoss(**kwargs).grad_mult == GOLDEN["attrs"]["grad_mult"]
    with pytest.raises(ValueError, match="grad_mult"):
        SCRAPLLoss(**{**kwargs, "grad_mult": "lots"})


def test_read_only_tensor_dict() -> None:
    from scrapl.util import ReadOnlyTensorDict

    gold = GOLDEN["tensor_dict"]
    data = {"a": torch.arange(3.0), 2: torch.ones(2, 2)}
    d = ReadOnlyTensorDict(data, persistent=False)
    assert (len(d), "a" in d, "b" in d) == (gold["len"], gold["contains_a"], gold["contains_b"])
    torch.testing.assert_close(d["a"], gold["item_a"])
    torch.testing.assert_close(d[2], gold["item_2"])
    assert sorted(str(k) for k in d.keys) == gold["keys"]
    assert sorted(d.state_dict()) == gold["state_dict_keys"]
    assert sorted(ReadOnlyTensorDict(data).state_dict()) == gold["persistent_state_dict_keys"]
    assert dict(d.items()).keys() == {"a", 2} and len(list(d.values())) == 2
