"""The theta-IS warmup driver: files, resume after an interruption, sharding and
merging, aggregation, progress bar and errors."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import torch

from scrapl.errors import WarmupError
from scrapl.samplers import (
    InvalidWarmupFileError,
    ThetaISSampler,
    merge_warmup_dir,
    probs_from_curvatures,
    run_warmup,
    shard_paths,
    vals_file,
)

N = 64
P = 5
U = 2


def _dist(x, x_hat, p):
    X = torch.fft.rfft(x.reshape(-1, N)).abs()[:, 1 + 5 * p : 6 + 5 * p]
    Xh = torch.fft.rfft(x_hat.reshape(-1, N)).abs()[:, 1 + 5 * p : 6 + 5 * p]
    return torch.linalg.vector_norm(X - Xh, dim=-1).mean()


class CountingDist:
    """The toy distance, counting calls per path; optionally raising at one path."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: Counter = Counter()
        self.fail_at = fail_at

    def __call__(self, x, x_hat, p):
        self.calls[p] += 1
        if p == self.fail_at:
            raise KeyboardInterrupt(f"simulated interruption at path {p}")
        return _dist(x, x_hat, p)


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.AvgPool1d(4), torch.nn.Linear(N // 4, 4), torch.nn.Tanh(), torch.nn.Linear(4, U), torch.nn.Sigmoid())
    dec = torch.nn.Sequential(torch.nn.Linear(U, 6), torch.nn.Tanh(), torch.nn.Linear(6, N))
    g = torch.Generator().manual_seed(1)
    kws = [{"x": torch.rand(3, 1, N, generator=g)} for _ in range(2)]
    return {
        "theta_fn": lambda x: enc(x.squeeze(1)),
        "synth_fn": lambda t: dec(t).unsqueeze(1),
        "theta_fn_kwargs": kws,
        "params": list(enc.parameters()),
    }


def _run(problem, dist=_dist, **kw):
    kw.setdefault("progress", False)
    return run_warmup(dist, P, U, problem["theta_fn"], problem["synth_fn"], problem["theta_fn_kwargs"], problem["params"], **kw)


@pytest.fixture(scope="module")
def full(problem):
    return _run(problem)


def test_full_run_writes_files_and_probs(problem, full, tmp_path):
    assert full.shape == (P, U) and full.dtype == torch.float64
    assert torch.isfinite(full).all() and (full > 0).all()
    out = _run(problem, save_dir=tmp_path, min_prob_frac=0.2)
    assert torch.equal(out, full)  # per-path seeds: deterministic
    for p in range(P):
        v = torch.load(vals_file(tmp_path, p), weights_only=True)
        assert v.shape == (1, U) and torch.equal(v[0], full[p])
    probs = torch.load(tmp_path / "probs.pt", weights_only=True)
    assert torch.equal(probs, probs_from_curvatures(full, 0.2))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    s = ThetaISSampler(P, n_theta=U, min_prob_frac=0.2, probs_path=str(tmp_path / "probs.pt"))
    assert torch.equal(s.probs, probs)


def test_resume_after_interruption_computes_only_missing_paths(problem, full, tmp_path):
    first = CountingDist(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        _run(problem, first, save_dir=tmp_path)
    assert sorted(f for f in os.listdir(tmp_path)) == ["vals_0.pt", "vals_1.pt", "vals_2.pt", "warmup.json"]  # nothing partial
    second = CountingDist()
    out = _run(problem, second, save_dir=tmp_path)
    assert set(second.calls) == {3, 4}  # paths 0-2 were loaded, not recomputed
    assert all(n == 2 for n in second.calls.values())  # one call per batch
    assert torch.equal(out, full)
    assert os.path.isfile(tmp_path / "probs.pt")
    third = CountingDist()
    _run(problem, third, save_dir=tmp_path, resume=False)
    assert set(third.calls) == set(range(P))


def test_shards_then_merge_equal_full_run(problem, full, tmp_path):
    a = _run(problem, save_dir=tmp_path, shard=(0, 2))
    assert not os.path.exists(tmp_path / "probs.pt")  # incomplete: no probs.pt yet
    with pytest.raises(WarmupError, match="no curvature file"):
        merge_warmup_dir(tmp_path, P, U)
    b = _run(problem, save_dir=tmp_path, shard=(1, 2))
    assert torch.isnan(a[3:]).all() and torch.isfinite(a[:3]).all()
    assert torch.isnan(b[:3]).all() and torch.isfinite(b[3:]).all()
    assert torch.equal(torch.where(torch.isnan(a), b, a), full)
    assert not os.path.exists(tmp_path / "probs.pt")  # shard runs never write probs.pt
    probs = merge_warmup_dir(tmp_path, P, U, min_prob_frac=0.1)
    assert torch.equal(probs, probs_from_curvatures(full, 0.1))
    assert torch.equal(torch.load(tmp_path / "probs.pt", weights_only=True), probs)


def test_explicit_paths_and_partial_merge(problem, full, tmp_path):
    out = _run(problem, save_dir=tmp_path, paths=[4, 1])
    # same per-path seeds, but not always the same bits: MKL's float32 products may
    # round differently with the memory alignment left by the earlier paths
    torch.testing.assert_close(out[[1, 4]], full[[1, 4]], rtol=1e-5, atol=0)
    assert torch.isnan(out[[0, 2, 3]]).all()
    with pytest.warns(RuntimeWarning, match="no curvature file"):
        probs = merge_warmup_dir(tmp_path, P, U, require_complete=False)
    assert not os.path.exists(tmp_path / "probs.pt")  # partial results never become probs.pt
    assert float(probs[0]) == pytest.approx(1 / P)
    s = ThetaISSampler(P, n_theta=U)
    with pytest.warns(RuntimeWarning):
        s.load_warmup_dir(tmp_path)
    assert torch.equal(s.probs, probs)


def test_agg_mean_files_and_probs(problem, tmp_path):
    out = _run(problem, save_dir=tmp_path, agg="mean", paths=range(2))
    n_tensors = len(problem["params"])
    v = torch.load(vals_file(tmp_path, 0), weights_only=True)
    assert v.shape == (n_tensors, U)
    assert torch.allclose(out[0], v.mean(0))
    with pytest.raises(InvalidWarmupFileError, match="agg='none'"):
        merge_warmup_dir(tmp_path, P, U, require_complete=False)


def test_sampler_warmup_updates_probs(problem, full):
    s = ThetaISSampler(P, n_theta=U, min_prob_frac=0.3)
    out = s.warmup(_dist, problem["theta_fn"], problem["synth_fn"], problem["theta_fn_kwargs"], problem["params"], progress=False, paths=[0, 1, 2])
    assert torch.isnan(out[3:]).all()
    s.warmup(_dist, problem["theta_fn"], problem["synth_fn"], problem["theta_fn_kwargs"], problem["params"], progress=False, paths=[3, 4])
    assert torch.equal(s.curvatures, full)
    assert torch.equal(s.probs, probs_from_curvatures(full, 0.3))


def test_corrupt_file_on_resume_is_a_clear_error(problem, tmp_path):
    _run(problem, save_dir=tmp_path, paths=[0])  # the folder's warmup.json
    (tmp_path / "vals_2.pt").write_bytes(b"garbage")
    with pytest.raises(InvalidWarmupFileError, match="vals_2.pt"):
        _run(problem, save_dir=tmp_path)
    torch.save(torch.ones(1, U + 1), tmp_path / "vals_2.pt")
    with pytest.raises(InvalidWarmupFileError, match=rf"vals_2.pt.*\(1, {U}\)"):
        _run(problem, save_dir=tmp_path)


def test_progress_bar(problem, capsys):
    _run(problem, paths=[0], progress=True)
    assert "theta-IS warmup" in capsys.readouterr().err
    _run(problem, paths=[0], progress=False)
    assert capsys.readouterr().err == ""


def test_generator_seeds_the_start_vectors(problem, full):
    a = _run(problem, generator=torch.Generator().manual_seed(123), paths=[0, 1])
    b = _run(problem, generator=torch.Generator().manual_seed(123), paths=[0, 1])
    assert torch.equal(a[:2], b[:2]) and torch.isnan(a[2:]).all()
    assert not torch.equal(a[:2], full[:2])


def test_determinism_warning(problem):
    drop = torch.nn.Dropout(0.5)
    with pytest.warns(RuntimeWarning, match="theta_fn is not deterministic"):
        run_warmup(
            _dist, P, U, lambda x: drop(problem["theta_fn"](x)), problem["synth_fn"], problem["theta_fn_kwargs"], problem["params"], paths=[0], progress=False
        )


def test_shard_paths_partition():
    paths = list(range(11))
    for count in (1, 2, 3, 5, 11, 13):
        shares = [shard_paths(paths, i, count) for i in range(count)]
        assert sum(shares, []) == paths
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    with pytest.raises(ValueError, match="shard index"):
        shard_paths(paths, 3, 3)
    with pytest.raises(ValueError, match="shard count"):
        shard_paths(paths, 0, 0)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"n_theta": 0}, ValueError, "n_theta"),
        ({"n_paths": 0}, ValueError, "n_paths"),
        ({"n_iter": 0}, ValueError, "n_iter"),
        ({"paths": [0, 9]}, ValueError, "paths"),
        ({"paths": [1, 1]}, ValueError, "repeat"),
        ({"paths": "01"}, TypeError, "paths"),
        ({"shard": (2, 2)}, ValueError, "shard index"),
        ({"shard": [0, 2]}, TypeError, "shard"),
        ({"distributed": True}, ValueError, "not initialised"),
        ({"min_prob_frac": 1.0}, ValueError, "min_prob_frac"),
        ({"agg": "sum"}, ValueError, "agg"),
        ({"generator": 5}, TypeError, "generator"),
        ({"method": "qr"}, ValueError, "method"),
        ({"loss_hessian": "diag"}, ValueError, "loss_hessian"),
    ],
)
def test_run_warmup_errors(problem, kwargs, exc, match):
    args = {"n_paths": P, "n_theta": U}
    for k in ("n_paths", "n_theta"):
        if k in kwargs:
            args[k] = kwargs.pop(k)
    with pytest.raises(exc, match=match):
        run_warmup(
            _dist, args["n_paths"], args["n_theta"], problem["theta_fn"], problem["synth_fn"], problem["theta_fn_kwargs"], problem["params"], progress=False, **kwargs
        )


def test_errors_without_computation(problem, tmp_path):
    with pytest.raises(TypeError, match="dist_fn"):
        run_warmup(None, P, U, problem["theta_fn"], problem["synth_fn"], problem["theta_fn_kwargs"], problem["params"])  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="warmup_dir"):
        merge_warmup_dir(tmp_path / "missing", P, U)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="warmup_dir"):
        merge_warmup_dir(tmp_path / "file", P, U)
    with pytest.raises(ValueError, match="n_theta=3"):
        run_warmup(_dist, P, 3, problem["theta_fn"], problem["synth_fn"], problem["theta_fn_kwargs"], problem["params"], progress=False, paths=[0])


def test_arnoldi_method_through_run_warmup(problem, full):
    a = _run(problem, method="arnoldi", paths=[0, 1])
    b = _run(problem, method="arnoldi", n_iter=60, tol=None, paths=[0, 1])
    assert torch.isfinite(a[:2]).all()
    assert torch.allclose(a[:2], b[:2], rtol=1e-3)  # 20 Krylov vectors already converged


# ---------------------------------------------------------------- settings recorded
def test_resume_only_with_the_same_settings(problem, full, tmp_path):
    """Another n_iter, data, encoder weights, seed or caller setting: refused before
    any work, naming what differs; overwrite=True recomputes."""
    _run(problem, save_dir=tmp_path, paths=[0, 1], settings={"transform": {"J": 6}})
    calls = CountingDist()
    with pytest.raises(WarmupError, match="n_iter: folder 20, now 5"):
        _run(problem, calls, save_dir=tmp_path, n_iter=5, settings={"transform": {"J": 6}})
    with pytest.raises(WarmupError, match=r"transform\.J: folder 6, now 7"):
        _run(problem, calls, save_dir=tmp_path, settings={"transform": {"J": 7}})
    other_data = dict(problem, theta_fn_kwargs=[{"x": k["x"][:2]} for k in problem["theta_fn_kwargs"]])
    with pytest.raises(WarmupError, match="warmup signals"):
        _run(other_data, calls, save_dir=tmp_path, settings={"transform": {"J": 6}})
    with pytest.raises(WarmupError, match="start-vector seed"):
        _run(problem, calls, save_dir=tmp_path, settings={"transform": {"J": 6}},
             generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        problem["params"][0].add_(1.0)
    try:
        with pytest.raises(WarmupError, match="encoder weights"):
            _run(problem, calls, save_dir=tmp_path, settings={"transform": {"J": 6}})
    finally:
        with torch.no_grad():
            problem["params"][0].sub_(1.0)
    assert not calls.calls  # nothing computed by a refused run
    stats: dict = {}
    out = _run(problem, calls, save_dir=tmp_path, n_iter=5, overwrite=True, stats=stats)
    assert stats["computed"] == list(range(P)) and stats["resumed"] == []
    assert torch.isfinite(out).all()
    stats = {}
    _run(problem, save_dir=tmp_path, n_iter=5, stats=stats)  # same settings: resumes everything
    assert stats == {"computed": [], "resumed": list(range(P))}


def test_results_without_a_manifest_and_stray_files_are_refused_by_name(problem, tmp_path):
    torch.save(torch.ones(1, U), tmp_path / "vals_0.pt")
    with pytest.raises(WarmupError, match="no warmup.json"):
        _run(problem, save_dir=tmp_path)
    (tmp_path / "vals_0.pt").unlink()
    _run(problem, save_dir=tmp_path, paths=[0])
    (tmp_path / "vals_old.pt").write_bytes(b"")
    (tmp_path / "vals_99.pt").write_bytes(b"")
    calls = CountingDist()
    with pytest.raises(WarmupError, match=r"vals_99\.pt, vals_old\.pt"):
        _run(problem, calls, save_dir=tmp_path, overwrite=True)
    assert not calls.calls and (tmp_path / "vals_0.pt").exists()  # nothing computed, nothing deleted


def test_a_stale_probs_file_never_survives_a_run_that_computes(problem, tmp_path):
    _run(problem, save_dir=tmp_path, paths=[0])
    stale = torch.full((P,), 1.0 / P, dtype=torch.float64)
    torch.save(stale, tmp_path / "probs.pt")
    first = CountingDist(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        _run(problem, first, save_dir=tmp_path)
    assert not (tmp_path / "probs.pt").exists()  # deleted before the work, not left stale
    _run(problem, save_dir=tmp_path)
    assert not torch.equal(torch.load(tmp_path / "probs.pt", weights_only=True), stale)
