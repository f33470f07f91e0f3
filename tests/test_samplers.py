"""Path samplers: reference-equal draws, sample_all_paths_first, checkpoints, the
theta-IS probability math (against the reference) and errors."""

from __future__ import annotations

import math
import os

import pytest
import torch
from pydantic import ValidationError

from scrapl.errors import WarmupError
from scrapl.interfaces import PathSampler, PluginSpec
from scrapl.samplers import (
    PLUGINS,
    InvalidWarmupFileError,
    ThetaISSampler,
    ThetaISSamplerConfig,
    UniformSampler,
    UniformSamplerConfig,
    probs_from_curvatures,
    save_probs_file,
    validate_probs,
)

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "sampler_golden.pt")


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- reference-equal draws ------------------------------------------------------------
def test_uniform_seeded_draws_equal_reference(golden):
    d = golden["draws"]
    s = UniformSampler(d["n_paths"], generator=_gen())
    ours = [s.sample(seed=int(seed)) for seed in d["seeds"]]
    assert ours == d["uniform"].tolist()


def test_nonuniform_seeded_draws_equal_reference(golden):
    d = golden["draws"]
    s = ThetaISSampler(d["n_paths"], generator=_gen())
    s.set_probs(d["probs"])
    ours = [s.sample(seed=int(seed)) for seed in d["seeds"]]
    assert ours == d["nonuniform"].tolist()
    assert len(set(ours)) > 2  # the probabilities are not degenerate


def test_sample_all_paths_first_draws_equal_reference(golden):
    d = golden["draws"]
    s = ThetaISSampler(d["n_paths"], generator=_gen(), sample_all_paths_first=True)
    s.set_probs(d["probs"])
    ours = [s.sample(seed=int(seed)) for seed in d["all_first_seeds"]]
    assert ours == d["all_first"].tolist()


def test_continuing_sequence_equals_reference_generator(golden):
    d = golden["draws"]
    s = ThetaISSampler(d["n_paths"], generator=torch.Generator().manual_seed(d["continuing_seed"]))
    s.set_probs(d["probs"])
    assert [s.sample() for _ in range(len(d["continuing"]))] == d["continuing"].tolist()


# -- behaviour ------------------------------------------------------------------------
def test_sample_all_paths_first_visits_every_path_once_then_uses_probs():
    P = 13
    s = ThetaISSampler(P, generator=_gen(3), sample_all_paths_first=True)
    probs = torch.zeros(P, dtype=torch.float64)
    probs[4] = 1.0
    s.set_probs(probs)
    first = [s.sample() for _ in range(P)]
    assert sorted(first) == list(range(P))
    assert first != list(range(P))  # random order
    assert [s.sample() for _ in range(10)] == [4] * 10
    s.reset()
    assert sorted(s.sample() for _ in range(P)) == list(range(P))


def test_unseeded_draws_use_own_generator_not_global_rng():
    a = UniformSampler(50, generator=_gen(9))
    b = UniformSampler(50, generator=_gen(9))
    torch.manual_seed(1)
    xs = [a.sample() for _ in range(20)]
    torch.manual_seed(2)
    ys = [b.sample() for _ in range(20)]
    assert xs == ys
    assert len(set(xs)) > 5


def test_draw_frequencies_follow_probs():
    probs = torch.tensor([0.1, 0.6, 0.0, 0.3], dtype=torch.float64)
    s = ThetaISSampler(4, generator=_gen(1))
    s.set_probs(probs)
    counts = torch.bincount(torch.tensor([s.sample() for _ in range(4000)]), minlength=4).double() / 4000
    assert counts[2] == 0
    assert torch.allclose(counts, probs, atol=0.03)


@pytest.mark.parametrize("cls", [UniformSampler, ThetaISSampler])
def test_state_dict_roundtrip_continues_sequence(cls, tmp_path):
    P = 9
    s = cls(P, generator=_gen(5), sample_all_paths_first=True)
    if cls is ThetaISSampler:
        s.set_curvatures(torch.rand(P, 1, generator=_gen(2), dtype=torch.float64) + 0.1)
    head = [s.sample() for _ in range(4)]  # in the middle of the first pass
    torch.save(s.state_dict(), tmp_path / "s.pt")
    expected = [s.sample() for _ in range(30)]
    restored = cls(P, generator=_gen(77), sample_all_paths_first=True)
    restored.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert [restored.sample() for _ in range(30)] == expected
    assert sorted(head + expected[: P - 4]) == list(range(P))
    assert torch.equal(restored.probs, s.probs)


def test_state_dict_contents():
    s = ThetaISSampler(5, n_theta=2, generator=_gen())
    st = s.state_dict()
    assert st["generator_state"].dtype == torch.uint8
    assert st["probs"].dtype == torch.float64 and st["probs"].shape == (5,)
    assert st["curvatures"].shape == (5, 2)
    assert isinstance(s, PathSampler)


def test_load_state_dict_errors():
    s = ThetaISSampler(5, generator=_gen())
    with pytest.raises(ValueError, match="n_paths"):
        s.load_state_dict(ThetaISSampler(6).state_dict())
    with pytest.raises(ValueError, match="n_theta"):
        s.load_state_dict(ThetaISSampler(5, n_theta=2).state_dict())
    st = s.state_dict()
    del st["generator_state"]
    with pytest.raises(ValueError, match="missing"):
        s.load_state_dict(st)
    st = s.state_dict()
    st["unsampled_paths"] = torch.tensor([0, 0])
    with pytest.raises(ValueError, match="unsampled"):
        s.load_state_dict(st)
    with pytest.raises(TypeError):
        s.load_state_dict([1, 2])  # type: ignore[arg-type]
    u = UniformSampler(5)
    t = ThetaISSampler(5)
    t.set_probs(torch.tensor([0.5, 0.5, 0, 0, 0], dtype=torch.float64))
    with pytest.raises(ValueError, match="not uniform"):
        u.load_state_dict(t.state_dict())


# -- probabilities ----------------------------------------------------------------------
def test_uniform_probs_and_fixed():
    s = UniformSampler(8)
    assert torch.equal(s.probs, torch.full((8,), 1 / 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="theta_is"):
        s.set_probs(torch.full((8,), 1 / 8, dtype=torch.float64))
    p = s.probs
    p[0] = 5.0  # a copy: the sampler is not affected
    assert s.probs[0] == 1 / 8


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (torch.ones(3, dtype=torch.float64) / 3, ValueError, r"expected \(4,\)"),
        (torch.tensor([0.5, 0.5, 0.5, -0.5], dtype=torch.float64), ValueError, "negative"),
        (torch.tensor([0.5, 0.5, math.nan, 0.0], dtype=torch.float64), ValueError, "NaN"),
        (torch.tensor([0.3, 0.3, 0.3, 0.3], dtype=torch.float64), ValueError, "sum to 1"),
        ("0.25", TypeError, "probs"),
        (torch.tensor([1, 0, 0, 0]), TypeError, "floating"),
    ],
)
def test_set_probs_validation(bad, exc, match):
    s = ThetaISSampler(4)
    with pytest.raises(exc, match=match):
        s.set_probs(bad)


def test_set_probs_respects_floor():
    s = ThetaISSampler(4, min_prob_frac=0.4)
    with pytest.raises(ValueError, match="min_prob_frac"):
        s.set_probs(torch.tensor([0.85, 0.05, 0.05, 0.05], dtype=torch.float64))
    s.set_probs(torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64))  # exactly at the floor 0.4 / 4
    assert float(s.probs.min()) == pytest.approx(0.1)


def test_probs_math_equals_reference(golden):
    for case in golden["prob_math"]["cases"]:
        vals = torch.full_like(case["vals"], math.nan)
        vals[case["paths"]] = case["vals"][case["paths"]]
        probs = probs_from_curvatures(vals, case["min_prob_frac"])
        if case["paths"].numel() == vals.size(0):
            # to the last ulp or two: torch's vectorised exp/log round differently on
            # different CPUs (AVX2 vs AVX-512), so bit equality is machine-dependent
            assert torch.allclose(probs, case["probs"], rtol=0, atol=1e-16)
        else:  # partial warmup: the reference's sequential mixing, in closed form
            assert torch.allclose(probs, case["probs"], rtol=0, atol=1e-10)
        assert not torch.allclose(probs, torch.full_like(probs, 1 / probs.numel()), atol=1e-3)


@pytest.mark.parametrize("mpf", [0.0, 0.1, 0.5, 0.99])
def test_probs_unit_sum_and_floor(mpf):
    g = _gen(4)
    P, U = 30, 4
    vals = torch.rand(P, U, generator=g, dtype=torch.float64) ** 6
    vals[3] = 0.0
    vals[5, 1] = math.nan
    vals[7] = math.nan
    probs = probs_from_curvatures(vals, mpf)
    assert probs.dtype == torch.float64 and probs.shape == (P,)
    assert abs(float(probs.sum()) - 1) < 1e-12
    assert float(probs.min()) >= mpf / P - 1e-15
    if mpf > 0:
        assert float(probs[3]) == pytest.approx(mpf / P, rel=1e-9)  # zero curvature: exactly the floor
    assert float(probs[7]) == pytest.approx(1 / P)  # unknown path keeps the uniform probability


def test_probs_formula_by_hand():
    vals = torch.tensor([[1.0, 2.0], [1.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    mpf = 0.5
    expected = torch.zeros(3, dtype=torch.float64)
    for u in range(2):
        v = vals[:, u].clamp(min=1e-12)
        expected += (1 - mpf) * v / v.sum() + mpf / 3
    expected /= 2
    assert torch.allclose(probs_from_curvatures(vals, mpf), expected, atol=1e-15)


def test_probs_partial_rules():
    P = 6
    vals = torch.full((P, 1), math.nan, dtype=torch.float64)
    assert torch.allclose(probs_from_curvatures(vals), torch.full((P,), 1 / P, dtype=torch.float64))
    vals[2, 0] = 5.0  # one known path: still uniform
    assert torch.allclose(probs_from_curvatures(vals), torch.full((P,), 1 / P, dtype=torch.float64))
    vals[4, 0] = 15.0  # two known paths share 2/P in proportion 1:3
    probs = probs_from_curvatures(vals)
    assert float(probs[2]) == pytest.approx(0.5 / P) and float(probs[4]) == pytest.approx(1.5 / P)
    assert float(probs[0]) == pytest.approx(1 / P)


@pytest.mark.parametrize(
    "vals, kwargs, exc, match",
    [
        (torch.tensor([[-1.0], [1.0]]), {}, ValueError, "non-negative"),
        (torch.tensor([[math.inf], [1.0]]), {}, ValueError, "infinite"),
        (torch.tensor([1.0, 2.0]), {}, ValueError, "n_paths, n_theta"),
        ([[1.0]], {}, TypeError, "vals"),
        (torch.ones(2, 1), {"min_prob_frac": 1.0}, ValueError, "min_prob_frac"),
        (torch.ones(2, 1), {"min_prob_frac": -0.1}, ValueError, "min_prob_frac"),
        (torch.ones(2, 1), {"eps": 0.0}, ValueError, "eps"),
    ],
)
def test_probs_from_curvatures_errors(vals, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        probs_from_curvatures(vals, **kwargs)


def test_curvature_updates_merge_and_clear():
    s = ThetaISSampler(4, n_theta=1)
    a = torch.tensor([[1.0], [2.0], [math.nan], [math.nan]], dtype=torch.float64)
    b = torch.tensor([[math.nan], [math.nan], [3.0], [4.0]], dtype=torch.float64)
    s.update_curvatures(a)
    s.update_curvatures(b)
    assert torch.allclose(s.probs, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    assert torch.equal(s.curvatures, torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64))
    s.clear_curvatures()
    assert torch.equal(s.probs, torch.full((4,), 0.25, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(4, 1\)"):
        s.set_curvatures(torch.ones(4, 2))
    with pytest.raises(ValueError, match="non-negative"):
        s.set_curvatures(-torch.ones(4, 1))


# -- files ------------------------------------------------------------------------------
def test_probs_path_roundtrip_and_reference_format(tmp_path):
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    save_probs_file(probs, tmp_path / "p.pt")
    assert not [f for f in os.listdir(tmp_path) if f != "p.pt"]  # no temporary file left
    s = ThetaISSampler(4, probs_path=str(tmp_path / "p.pt"))
    assert torch.equal(s.probs, probs) and s.loaded_probs_path == str(tmp_path / "p.pt")
    torch.save(probs.float(), tmp_path / "ref.pt")  # e.g. a float32 file written elsewhere
    assert torch.allclose(ThetaISSampler(4, probs_path=tmp_path / "ref.pt").probs, probs, atol=1e-7)


def test_probs_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        ThetaISSampler(4, probs_path=str(tmp_path / "nope.pt"))
    (tmp_path / "corrupt.pt").write_bytes(b"\x00not a torch file")
    with pytest.raises(InvalidWarmupFileError, match="corrupt.pt") as info:
        ThetaISSampler(4, probs_path=str(tmp_path / "corrupt.pt"))
    assert isinstance(info.value, WarmupError) and isinstance(info.value, ValueError)
    torch.save(torch.ones(5, dtype=torch.float64) / 5, tmp_path / "shape.pt")
    with pytest.raises(InvalidWarmupFileError, match=r"shape.pt.*expected \(4,\)"):
        ThetaISSampler(4, probs_path=str(tmp_path / "shape.pt"))
    torch.save(torch.tensor([0.5, 0.5, 0.5, -0.5], dtype=torch.float64), tmp_path / "neg.pt")
    with pytest.raises(InvalidWarmupFileError, match="negative"):
        ThetaISSampler(4, probs_path=str(tmp_path / "neg.pt"))
    torch.save(torch.ones(4, dtype=torch.float64), tmp_path / "unnorm.pt")
    with pytest.raises(InvalidWarmupFileError, match="sum to 1"):
        ThetaISSampler(4, probs_path=str(tmp_path / "unnorm.pt"))
    torch.save({"probs": torch.ones(4) / 4}, tmp_path / "dict.pt")
    with pytest.raises(InvalidWarmupFileError, match="expected a tensor"):
        ThetaISSampler(4, probs_path=str(tmp_path / "dict.pt"))
    torch.save(torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64), tmp_path / "floor.pt")
    with pytest.raises(InvalidWarmupFileError, match="floor.pt"):
        ThetaISSampler(4, min_prob_frac=0.8, probs_path=str(tmp_path / "floor.pt"))


def test_warmup_dir_reference_files(golden, tmp_path):
    pm = golden["prob_math"]
    vals = pm["dir_vals"]  # written by the reference as (1, U) float32 tensors
    for p in range(vals.size(0)):
        torch.save(vals[p : p + 1].clone(), tmp_path / f"vals_{p}.pt")
    s = ThetaISSampler(vals.size(0), n_theta=vals.size(1), warmup_dir=str(tmp_path))
    assert torch.equal(s.probs, pm["dir_probs"])


def test_warmup_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="warmup_dir"):
        ThetaISSampler(3, warmup_dir=str(tmp_path / "missing"))
    torch.save(torch.ones(1, 2), tmp_path / "vals_0.pt")
    torch.save(torch.ones(1, 2), tmp_path / "vals_1.pt")
    with pytest.warns(RuntimeWarning, match="no curvature file"):
        s = ThetaISSampler(3, n_theta=2, warmup_dir=str(tmp_path))
    assert torch.allclose(s.probs, torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.save(torch.ones(1, 3), tmp_path / "vals_2.pt")
    with pytest.raises(InvalidWarmupFileError, match=r"vals_2.pt.*\(1, 2\)"):
        ThetaISSampler(3, n_theta=2, warmup_dir=str(tmp_path))
    torch.save(torch.ones(2, 2), tmp_path / "vals_2.pt")
    with pytest.raises(InvalidWarmupFileError, match="agg='none'"):
        ThetaISSampler(3, n_theta=2, warmup_dir=str(tmp_path))
    s = ThetaISSampler(3, n_theta=2, warmup_dir=str(tmp_path), agg="mean")
    assert torch.allclose(s.probs, torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.save(-torch.ones(1, 2), tmp_path / "vals_2.pt")
    with pytest.raises(InvalidWarmupFileError, match="non-negative"):
        ThetaISSampler(3, n_theta=2, warmup_dir=str(tmp_path))
    torch.save(torch.ones(1, 2), tmp_path / "vals_2.pt")
    torch.save(torch.ones(1, 2), tmp_path / "vals_7.pt")
    with pytest.raises(WarmupError, match="n_paths=3"):
        ThetaISSampler(3, n_theta=2, warmup_dir=str(tmp_path))


# -- construction errors, configs, plugins -----------------------------------------------
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"n_paths": 0}, ValueError, "n_paths"),
        ({"n_paths": 2.5}, TypeError, "n_paths"),
        ({"n_paths": 3, "n_theta": 0}, ValueError, "n_theta"),
        ({"n_paths": 3, "min_prob_frac": 1.0}, ValueError, "min_prob_frac"),
        ({"n_paths": 3, "min_prob_frac": -0.5}, ValueError, "min_prob_frac"),
        ({"n_paths": 3, "eps": -1.0}, ValueError, "eps"),
        ({"n_paths": 3, "agg": "sum"}, ValueError, "agg"),
        ({"n_paths": 3, "generator": 3}, TypeError, "generator"),
        ({"n_paths": 3, "probs_path": "a", "warmup_dir": "b"}, ValueError, "at most one"),
        ({"n_paths": 3, "sample_all_paths_first": "yes"}, TypeError, "sample_all_paths_first"),
    ],
)
def test_constructor_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ThetaISSampler(**kwargs)


@pytest.mark.parametrize(
    "data, loc",
    [
        ({"n_theta": 0}, "n_theta"),
        ({"min_prob_frac": 1.0}, "min_prob_frac"),
        ({"min_prob_frac": -0.01}, "min_prob_frac"),
        ({"eps": 0}, "eps"),
        ({"agg": "sum"}, "agg"),
        ({"typo": 1}, "typo"),
        ({"probs_path": "a.pt", "warmup_dir": "w"}, "probs_path"),
    ],
)
def test_theta_is_config_errors(data, loc):
    with pytest.raises(ValidationError, match=loc):
        ThetaISSamplerConfig(**data)


def test_configs_roundtrip_and_frozen():
    cfg = ThetaISSamplerConfig(n_theta=3, min_prob_frac=0.2)
    assert ThetaISSamplerConfig.model_validate(cfg.model_dump()) == cfg
    with pytest.raises(ValidationError):
        cfg.n_theta = 4  # type: ignore[misc]
    assert UniformSamplerConfig().name == "uniform"
    with pytest.raises(ValidationError, match="sample_all_paths_firs"):
        UniformSamplerConfig(sample_all_paths_firs=True)


def test_plugins_build_samplers(tmp_path):
    specs = {s.name: s for s in PLUGINS}
    assert set(specs) == {"uniform", "theta_is"}
    assert all(isinstance(s, PluginSpec) and s.kind == "sampler" for s in PLUGINS)
    g = _gen(1)
    u = specs["uniform"].factory(UniformSamplerConfig(sample_all_paths_first=True), n_paths=5, generator=g)
    assert isinstance(u, UniformSampler) and u.generator is g and u.sample_all_paths_first
    save_probs_file(torch.tensor([0.5, 0.5, 0, 0, 0], dtype=torch.float64), tmp_path / "p.pt")
    t = specs["theta_is"].factory({"name": "theta_is", "probs_path": str(tmp_path / "p.pt")}, n_paths=5, generator=g)
    assert isinstance(t, ThetaISSampler) and {t.sample() for _ in range(20)} <= {0, 1}
    with pytest.raises(FileNotFoundError):
        specs["theta_is"].factory(ThetaISSamplerConfig(warmup_dir=str(tmp_path / "none")), n_paths=5, generator=g)


def test_validate_probs_accepts_lists():
    assert validate_probs([0.5, 0.5], 2).dtype == torch.float64
    with pytest.raises(TypeError):
        validate_probs(["a", "b"], 2)
