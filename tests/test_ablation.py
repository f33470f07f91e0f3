"""The ablation machinery with tiny specs: validation, confidence intervals, resume,
foreign folders, and equal results across executors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from scrapl.ablation import AblationSpec, ablate, load_spec, mean_ci, t_quantile_975
from scrapl.cli import main

pytest.importorskip("auraloss")

TINY: dict[str, Any] = {
    "name": "tiny",
    "task": {"name": "chirplet", "settings": {"n_val": 4, "synth": {"max_shift": 64}, "encoder": {"norm_examples": 4}}},
    "base": {
        "transform": {"name": "jtfs", "shape": 4096, "J": 6, "Q1": 8, "Q2": 1, "J_fr": 2, "Q_fr": 1, "T": 64, "F": 4},
        "sampler": {"name": "uniform"},
        "optimizer": {"name": "p_adam_saga", "lr": 1e-4},
    },
    "arms": [
        {"name": "scrapl", "optimizer": {"name": "p_adam"}},
        {"name": "sup", "kind": "supervised"},
    ],
    "seeds": [0, 1],
    "budget": {"steps": 2, "val_every": 1, "batch_size": 2},
    "threads": 1,
}


def tiny(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(TINY)
    spec.update(changes)
    return spec


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "change, needle",
    [
        ({"arms": [{"name": "a", "learning_rate": 1}]}, "arms.0.learning_rate"),
        ({"arms": [{"name": "a", "sampler": {"name": "no_such_sampler"}}]}, "arms.0 (a)"),
        ({"arms": [{"name": "a", "optimizer": {"name": "no_such_opt"}}]}, "no_such_opt"),
        ({"arms": [{"name": "a", "optimizer": {"name": "adam", "momentum": 0.9}}]}, "momentum"),
        ({"arms": [{"name": "a"}, {"name": "a", "kind": "mss"}]}, "unique"),
        ({"arms": [{"name": "m", "kind": "mss", "optimizer": {"name": "p_adam"}}]}, "takes no optimizer"),
        ({"arms": []}, "arms"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [1, 1]}, "repeat"),
        ({"budget": {"steps": 0}}, "budget.steps"),
        ({"budget": {"steps": -5}}, "budget.steps"),
        ({"base": {"transform": {"name": "jtfs", "shape": 4096, "J": 6, "Q1": 8, "Q2": 1, "J_fr": 2, "Q_fr": 1, "oops": 1}}}, "oops"),
    ],
)
def test_bad_specs_are_rejected_with_their_location(change: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError) as info:
        load_spec(tiny(**change))
    assert needle in str(info.value)


def test_unknown_task_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        ablate(tiny(task={"name": "nope"}), tmp_path / "o", progress=False, plots=False)
    assert not (tmp_path / "o").exists()


def test_cli_bad_spec_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(tiny(seeds=[])))
    assert main(["ablate", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "seeds" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["ablate", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(TINY))
    assert main(["ablate", str(good), "--out", str(tmp_path / "o"), "--address", "127.0.0.1:1"]) == 2
    assert "--executor ray" in capsys.readouterr().err


# ----------------------------------------------------------------------------- statistics
def test_confidence_interval_matches_a_hand_computation() -> None:
    values = [0.10, 0.12, 0.11, 0.15, 0.12]
    m, h = mean_ci(values)
    assert m == pytest.approx(0.12)
    # s = sqrt(((.02)^2 + 0 + (.01)^2 + (.03)^2 + 0) / 4) = sqrt(0.0014 / 4); t_{0.975,4} = 2.7764
    assert h == pytest.approx(2.7764 * math.sqrt(0.0014 / 4) / math.sqrt(5), rel=1e-6)
    assert mean_ci([0.3]) == (0.3, None)
    assert t_quantile_975(1) == pytest.approx(12.7062)
    assert t_quantile_975(40) == pytest.approx(2.0211, abs=2e-4)
    assert t_quantile_975(120) == pytest.approx(1.9799, abs=2e-4)
    with pytest.raises(ValueError):
        mean_ci([])


# ----------------------------------------------------------------------------- sweeps
def test_sweep_writes_report_and_resumes_after_a_killed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sweep"
    import scrapl.ablation.runner as runner

    real = runner.run_one
    calls: list[tuple[str, int]] = []

    def dies_on_third(spec: Any, arm: str, seed: int, **kw: Any) -> dict[str, Any]:
        calls.append((arm, seed))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the sweep is killed while this run is in flight
        return real(spec, arm, seed, **kw)

    monkeypatch.setattr(runner, "run_one", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        ablate(TINY, out, progress=False, plots=False)
    done = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert done == ["scrapl__seed0.json", "scrapl__seed1.json"]
    stamp = (out / "runs" / "scrapl__seed0.json").stat().st_mtime_ns
    monkeypatch.setattr(runner, "run_one", real)

    result = ablate(TINY, out, progress=False)
    assert (result.ran, result.skipped) == (2, 2)
    assert (out / "runs" / "scrapl__seed0.json").stat().st_mtime_ns == stamp
    for name in ("runs.csv", "summary.json", "summary.md", "val_error_vs_steps.png", "val_error_vs_time.png",
                 "error_vs_cost.png"):
        assert (out / name).is_file(), name
    rows = (out / "runs.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4 and rows[0].startswith("arm,kind,seed,theta_l1")
    summary = json.loads((out / "summary.json").read_text())
    arm = {r["arm"]: r for r in summary["arms"]}["scrapl"]
    finals = [r["final"]["theta_l1"] for r in result.records if r["arm"] == "scrapl"]
    m, h = mean_ci(finals)
    assert arm["theta_l1"] == pytest.approx(m) and arm["theta_l1_ci"] == pytest.approx(h)
    assert arm["n"] == 2 and arm["ms_per_step"] > 0 and arm["peak_rss_mib"] > 0
    assert "predict the middle" in result.table()
    assert summary["baseline_predict_middle"]["theta_l1"] > 0
    rec = result.records[0]
    assert [c["step"] for c in rec["curve"]] == [0, 1, 2]

    again = ablate(TINY, out, progress=False, plots=False)
    assert (again.ran, again.skipped) == (0, 4)


def test_foreign_output_folder_is_refused_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    spec = tiny(arms=[{"name": "sup", "kind": "supervised"}], seeds=[0])
    ablate(spec, out, progress=False, plots=False)
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(ValueError, match="another spec"):
        ablate(tiny(arms=[{"name": "sup", "kind": "supervised"}], seeds=[0, 1]), out, progress=False)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(tiny(arms=[{"name": "sup", "kind": "supervised", "lr": 0.01}], seeds=[0])))
    assert main(["ablate", str(other), "--out", str(out), "--no-progress"]) == 2
    assert "another spec" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        ablate(spec, stray, progress=False)


def _finals(result: Any) -> dict[tuple[str, int], Any]:
    return {(r["arm"], r["seed"]): (r["final"], [c["theta_l1"] for c in r["curve"]]) for r in result.records}


def test_worker_processes_give_the_same_results(tmp_path: Path) -> None:
    spec = tiny(seeds=[0])
    here = ablate(spec, tmp_path / "here", progress=False, plots=False)
    pool = ablate(spec, tmp_path / "pool", workers=2, progress=False, plots=False)
    assert _finals(here) == _finals(pool)


def test_ray_executor_gives_the_same_results(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    spec = tiny(seeds=[0])
    here = ablate(spec, tmp_path / "here", progress=False, plots=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = ablate(spec, tmp_path / "ray", executor="ray", progress=False, plots=False)
    finally:
        ray.shutdown()
    assert _finals(here) == _finals(remote)


def test_ray_address_that_does_not_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(tiny(seeds=[0], arms=[{"name": "sup", "kind": "supervised"}])))
    assert main(["ablate", str(good), "--out", str(tmp_path / "o"), "--executor", "ray", "--address",
                 "127.0.0.1:9", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Ray" in err and "Traceback" not in err


def test_third_party_task_registration() -> None:
    from scrapl.ablation import get_task_class, register_task, task_names
    from scrapl.demo.task import ChirpletTask

    class Mine(ChirpletTask):
        pass

    register_task("mine_for_test", Mine)
    assert "mine_for_test" in task_names() and get_task_class("mine_for_test") is Mine
    with pytest.raises(ValueError, match="already registered"):
        register_task("chirplet", Mine)
    with pytest.raises(TypeError):
        register_task("bad", dict)  # type: ignore[arg-type]
    assert isinstance(load_spec(tiny(task={"name": "mine_for_test"})), AblationSpec)


def test_shipped_spec_is_valid() -> None:
    spec = load_spec(Path(__file__).resolve().parents[1] / "configs" / "ablation_chirplet.yaml")
    kinds = {a.name: a.kind for a in spec.arms}
    assert {"full_jtfs", "mss", "supervised"} <= set(kinds.values())
    assert len(spec.seeds) >= 5


@pytest.mark.parametrize("name", ["ablation_hyperparams.yaml", "ablation_followup.yaml"])
def test_companion_specs_share_the_shipped_task_base_and_budget(name: str) -> None:
    """The hyperparameter and follow-up specs compare their arms with the shipped
    spec's runs of the same seeds: that holds only with the same task, base and budget."""
    configs = Path(__file__).resolve().parents[1] / "configs"
    shipped, other = load_spec(configs / "ablation_chirplet.yaml"), load_spec(configs / name)
    assert (other.task, other.base, other.budget, other.threads) == (shipped.task, shipped.base, shipped.budget, shipped.threads)
    assert set(other.seeds) <= set(shipped.seeds)


# ----------------------------------------------------------------------------- budgets
def test_arm_steps_override_the_budget_and_show_in_the_table(tmp_path: Path) -> None:
    spec = tiny(arms=[{"name": "scrapl", "steps": 3}, {"name": "sup", "kind": "supervised"}], seeds=[0],
                budget={"steps": 2, "val_every": 2, "batch_size": 2})
    res = ablate(spec, tmp_path / "o", progress=False, plots=False)
    steps = {r["arm"]: r["steps"] for r in res.records}
    assert steps == {"scrapl": 3, "sup": 2}
    assert [c["step"] for c in next(r for r in res.records if r["arm"] == "scrapl")["curve"]] == [0, 2, 3]
    header, *lines = res.table().splitlines()
    assert "steps" in header.split()
    assert {r["arm"]: r["steps"] for r in res.rows} == {"scrapl": 3.0, "sup": 2.0}
    with pytest.raises(ValueError, match="arms.0.steps"):
        load_spec(tiny(arms=[{"name": "a", "steps": 0}]))


def test_cpu_seconds_budget_stops_a_run_early(tmp_path: Path) -> None:
    spec = tiny(arms=[{"name": "sup", "kind": "supervised"}], seeds=[0],
                budget={"steps": 100000, "val_every": 1000, "batch_size": 2, "cpu_seconds": 1e-9})
    rec = ablate(spec, tmp_path / "o", progress=False, plots=False).records[0]
    assert rec["steps"] == 1 and rec["train_cpu_seconds"] >= 0 and rec["curve"][-1]["step"] == 1
    with pytest.raises(ValueError, match="budget.cpu_seconds"):
        load_spec(tiny(budget={"steps": 2, "cpu_seconds": 0}))


def test_optional_fields_left_out_keep_the_spec_hash() -> None:
    from scrapl.ablation.spec import spec_hash

    a = load_spec(tiny())
    b = load_spec(tiny(budget={**TINY["budget"], "cpu_seconds": None}))
    assert spec_hash(a) == spec_hash(b)
    assert spec_hash(a) != spec_hash(load_spec(tiny(budget={**TINY["budget"], "cpu_seconds": 5.0})))


def test_chirplet_batches_are_cached_in_blocks_not_one_allocation_each() -> None:
    """Thousands of small cached tensors fragment the heap (5 MB more resident memory
    per step measured); the stream keeps them as views of a few large blocks."""
    from scrapl.ablation.tasks import make_task

    task = make_task("chirplet", TINY["task"]["settings"], 4096)
    batches = [task.batch(0, i, 2) for i in range(12)]
    for key in ("x", "features", "theta", "shifts_hat"):
        assert len({b[key].untyped_storage().data_ptr() for b in batches}) == 1, key
    again = make_task("chirplet", TINY["task"]["settings"], 4096)
    for i in (0, 11):  # same values as generated one by one
        for key in ("x", "theta", "shifts_hat"):
            assert torch.equal(again.batch(0, i, 2)[key], batches[i][key])


def test_plain_torch_adam_arm_draws_a_new_path_every_step(tmp_path: Path) -> None:
    """torch.optim.Adam does not consume the loss's path: the runner must, or the
    arm trains on the first path drawn for ever."""
    spec = tiny(arms=[{"name": "plain", "optimizer": {"name": "adam", "lr": 1e-4}}, {"name": "p_adam"}], seeds=[0],
                budget={"steps": 12, "val_every": 12, "batch_size": 2})
    spec["arms"][1]["optimizer"] = {"name": "p_adam"}
    res = ablate(spec, tmp_path / "o", progress=False, plots=False)
    drawn = {r["arm"]: r["info"]["distinct_paths_drawn"] for r in res.records}
    assert drawn["plain"] > 3 and drawn["p_adam"] > 3
    assert drawn["plain"] == drawn["p_adam"]  # same seed: the same path sequence


def test_step_time_is_split_by_stage(tmp_path: Path) -> None:
    from scrapl.ablation.runner import STAGES
    from scrapl.demo.train import format_stage_split

    spec = tiny(seeds=[0])
    res = ablate(spec, tmp_path / "o", progress=False, plots=False)
    for rec in res.records:
        st = rec["stage_ms"]
        assert list(st) == list(STAGES) and all(v >= 0 for v in st.values())
        assert sum(st.values()) == pytest.approx(rec["ms_per_step"], rel=1e-3, abs=1e-3)
    sup = next(r for r in res.records if r["kind"] == "supervised")
    assert sup["stage_ms"]["render"] == 0.0  # no synth in the supervised arm
    text = format_stage_split(res.rows)
    assert "backward" in text and "scrapl" in text
    assert "| arm | model | render | loss | backward | optimizer | total |" in (tmp_path / "o" / "summary.md").read_text()


def test_a_third_party_task_trains_and_its_warmup_file_replaces_the_arms_warmup(tmp_path: Path) -> None:
    """A task defined outside scrapl (tests/toy_task.py) runs through `scrapl.ablation`:
    `run_warmup_job` writes its theta-IS probabilities, and a theta_is arm given them
    as `probs_path` trains without a warmup of its own (what docs/ablation.md says)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from toy_task import ToyTask

    from scrapl.ablation import register_task, task_names
    from scrapl.ablation.runner import run_one
    from scrapl.ablation.warmup import run_warmup_job

    if "toy" not in task_names():
        register_task("toy", ToyTask)
    base = {"transform": {"name": "jtfs", "shape": 1024, "J": 4, "Q1": 2, "Q2": 1, "J_fr": 2, "Q_fr": 1},
            "sampler": {"name": "uniform"}, "optimizer": {"name": "p_adam_saga", "lr": 1e-3}}
    job = {"task": {"name": "toy"}, "warmup": {"n_iter": 2, "batch_size": 2}, "seed": 0}
    summary = run_warmup_job(base, job, out_dir=tmp_path / "w", progress=False)
    assert summary["complete"] and summary["n_paths"] > 1
    probs = torch.load(summary["probs"], weights_only=True)
    assert abs(float(probs.sum()) - 1.0) < 1e-6
    spec = {"name": "toy", "task": {"name": "toy"}, "base": base, "seeds": [0],
            "arms": [{"name": "is_file", "sampler": {"name": "theta_is", "probs_path": summary["probs"]}},
                     {"name": "is_warm", "sampler": {"name": "theta_is"}, "warmup": {"n_iter": 2, "batch_size": 2}}],
            "budget": {"steps": 3, "val_every": 3, "batch_size": 2}, "threads": 1}
    from_file = run_one(spec, "is_file", 0)
    warmed = run_one(spec, "is_warm", 0)
    assert "warmup_seconds" not in from_file["info"] and warmed["info"]["warmup_seconds"] > 0
    assert math.isfinite(from_file["final"]["theta_l1"]) and "theta_l1_amp" in from_file["final"]


def test_with_n_theta_sets_checks_and_leaves_other_samplers() -> None:
    from scrapl.ablation.warmup import with_n_theta

    cfg = {"transform": {"name": "jtfs"}, "sampler": {"name": "theta_is", "min_prob_frac": 0.5}}
    out = with_n_theta(cfg, 2)
    assert out["sampler"] == {"name": "theta_is", "min_prob_frac": 0.5, "n_theta": 2}
    assert "n_theta" not in cfg["sampler"]  # a copy
    assert with_n_theta({"sampler": "theta_is"}, 3)["sampler"] == {"name": "theta_is", "n_theta": 3}
    assert with_n_theta({"sampler": {"name": "uniform"}}, 2)["sampler"] == {"name": "uniform"}
    with pytest.raises(ValueError, match="n_theta must be 2"):
        with_n_theta({"sampler": {"name": "theta_is", "n_theta": 3}}, 2)
