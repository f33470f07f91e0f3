"""The Lightning integration in real Trainers (tiny task: 14 paths, 1024 samples,
16 examples in batches of 4): validation and sanity check, automatic and manual
optimization against a plain PyTorch loop, accumulation, clipping, schedulers,
bit-identical resume at an epoch end and mid-epoch, bf16-mixed, logged keys, the
warmup against the library's, probabilities from files, and setup errors."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, Logger  # noqa: E402

import scrapl  # noqa: E402
from scrapl.integrations.lightning import ResumableDataLoader, SCRAPLCallback, path_tag, probability_grid  # noqa: E402
from scrapl.samplers import probs_from_curvatures, run_warmup  # noqa: E402

from lightning_task import CONFIG, WARMUP_CONFIG, StepPaths, Task, dataset, loader, params, trainer  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",  # Lightning's hints (few workers, small log interval, ...)
)


def _draws(n: int, config: dict = CONFIG) -> list[int]:
    """The first ``n`` training paths of a fresh build of ``config``."""
    s = scrapl.build(config).sampler
    return [s.sample() for _ in range(n)]


# -------------------------------------------------------------------- fit / validation
def test_fit_with_validation_then_more_training_and_eval_draws_isolated():
    m, paths = Task(), StepPaths()
    tr = trainer(max_epochs=1, num_sanity_val_steps=2, callbacks=[SCRAPLCallback(), paths])
    tr.fit(m, loader(), loader(8))
    assert "val_loss" in tr.callback_metrics and tr.global_step == 4
    tr2 = trainer(max_epochs=1, callbacks=[SCRAPLCallback(), paths])  # more training, same module
    tr2.fit(m, loader(), loader(8))
    assert tr2.global_step == 4  # a new Trainer counts from 0; 4 more steps
    # One path per step, the same sequence as the sampler's own draws: the
    # validation forwards (sanity check included) did not advance it.
    assert paths.paths == m.train_paths == _draws(8)
    assert len(set(paths.paths)) > 1

    # Without the callback the validation draws shift the training sequence.
    m2 = Task()
    trainer(max_epochs=1, num_sanity_val_steps=2).fit(m2, loader(), loader(8))
    assert m2.train_paths != _draws(4)


def _plain_loop(task: Task, *, epochs: int, accumulate: int = 1, clip: float | None = None,
                scheduler: bool = False) -> list[int]:
    """The training a Trainer should do, written out in plain PyTorch."""
    cfg = task.configure_optimizers()
    opt = cfg["optimizer"] if isinstance(cfg, dict) else cfg
    sched = cfg["lr_scheduler"]["scheduler"] if isinstance(cfg, dict) else None
    paths = []
    for _ in range(epochs):
        for i, (x, _theta) in enumerate(loader()):
            loss = task.loss_fn(task.synth(task.encoder(x)), x)
            (loss / accumulate).backward()
            if (i + 1) % accumulate == 0:
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(task.parameters(), clip)
                opt.step()
                opt.zero_grad()
                paths.append(opt.last_path)
                if sched is not None:
                    sched.step()
    return paths


def test_automatic_optimization_closure_accumulation_clipping_scheduler_equal_plain_loop():
    # P-SAGA without P-Adam: its step scales with the gradient, so clipping shows.
    config = {**CONFIG, "optimizer": {"name": "p_saga"}}
    m, paths = Task(config, scheduler=True), StepPaths()
    tr = trainer(max_epochs=2, accumulate_grad_batches=2, gradient_clip_val=0.02, callbacks=[SCRAPLCallback(), paths])
    tr.fit(m, loader())
    assert tr.global_step == 4
    # Both micro-batches of a step used the step's path (taken inside the closure).
    assert m.train_paths[0::2] == m.train_paths[1::2] == paths.paths == _draws(4)
    assert tr.optimizers[0].param_groups[0]["lr"] == pytest.approx(3e-2 * 0.25)

    ref = Task(config, scheduler=True)
    ref_paths = _plain_loop(ref, epochs=2, accumulate=2, clip=0.02, scheduler=True)
    assert ref_paths == paths.paths
    for a, b in zip(params(m), params(ref)):
        assert torch.equal(a, b)
    # The clipping mattered (the test can fail): without it the parameters differ.
    noclip = Task(config, scheduler=True)
    _plain_loop(noclip, epochs=2, accumulate=2, scheduler=True)
    assert any(not torch.equal(a, b) for a, b in zip(params(m), params(noclip)))


def test_manual_optimization_equals_plain_loop():
    m = Task(manual=True, scheduler=True, clip=0.05)
    trainer(max_epochs=1, callbacks=[SCRAPLCallback()]).fit(m, loader())
    ref = Task(scheduler=True)
    ref_paths = _plain_loop(ref, epochs=1, clip=0.05, scheduler=True)
    assert m.train_paths == ref_paths == _draws(4)
    for a, b in zip(params(m), params(ref)):
        assert torch.equal(a, b)


# -------------------------------------------------------------------- resume
def _probs_file(tmp: Path) -> Path:
    """A probabilities file as a warmup writes it (random curvatures)."""
    C = torch.rand(14, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(probs_from_curvatures(C), tmp / "probs.pt")
    return tmp / "probs.pt"


def _fit(tmp: Path, epochs: int, *, ckpt_path=None, loader_fn=loader, every_n_train_steps=None, probs=None):
    m, paths = Task(), StepPaths()
    cb = SCRAPLCallback(probs_from=probs)
    ck = ModelCheckpoint(dirpath=tmp, save_top_k=-1, every_n_train_steps=every_n_train_steps,
                         every_n_epochs=None if every_n_train_steps else 1, filename="{epoch}-{step}")
    tr = trainer(max_epochs=epochs, callbacks=[cb, paths, ck], enable_checkpointing=True, num_sanity_val_steps=1,
                 limit_val_batches=1)
    tr.fit(m, loader_fn(), loader(4), ckpt_path=ckpt_path)
    return m, paths.paths, tr


def test_resume_at_epoch_end_is_bit_identical(tmp_path):
    source = _probs_file(tmp_path / "w")
    full, full_paths, _ = _fit(tmp_path / "a", 3, probs=source)
    ckpt = tmp_path / "a" / "epoch=0-step=4.ckpt"
    assert ckpt.exists()
    probs = full.loss_fn.sampler.probs.clone()
    assert torch.equal(probs, torch.load(source, weights_only=True))
    source.unlink()  # the resumed run must take the probabilities from the checkpoint
    resumed, resumed_paths, tr = _fit(tmp_path / "b", 3, ckpt_path=ckpt, probs=source)
    assert resumed_paths == full_paths[4:]
    assert torch.equal(resumed.loss_fn.sampler.probs, probs)
    assert not torch.equal(probs, torch.full_like(probs, 1 / 14))
    for a, b in zip(params(full), params(resumed)):
        assert torch.equal(a, b)
    fo, ro = full.trainer.optimizers[0].state_dict(), tr.optimizers[0].state_dict()
    for pid in fo["state"]:
        for key, v in fo["state"][pid].items():
            w = ro["state"][pid][key]
            if isinstance(v, dict):
                assert v.keys() == w.keys() and all(
                    torch.equal(v[k], w[k]) if isinstance(v[k], torch.Tensor) else v[k] == w[k] for k in v)
            else:
                assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w


def _shuffled(loader_cls):
    def make():
        return loader_cls(dataset(), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(7))
    return make


def test_resume_mid_epoch_with_resumable_loader_is_bit_identical(tmp_path):
    make = _shuffled(ResumableDataLoader)
    full, full_paths, _ = _fit(tmp_path / "a", 3, loader_fn=make, every_n_train_steps=3)
    ckpt = tmp_path / "a" / "epoch=1-step=6.ckpt"  # after batch 2 of 4 of the second epoch
    assert ckpt.exists()
    resumed, resumed_paths, _ = _fit(tmp_path / "b", 3, ckpt_path=ckpt, loader_fn=make, every_n_train_steps=3,
                                     )
    assert resumed_paths == full_paths[6:]
    for a, b in zip(params(full), params(resumed)):
        assert torch.equal(a, b)

    # A plain DataLoader restarts the epoch from its first batch: the run differs.
    plain = _shuffled(torch.utils.data.DataLoader)
    full_p, _, _ = _fit(tmp_path / "c", 3, loader_fn=plain, every_n_train_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res_p, _, _ = _fit(tmp_path / "d", 3, ckpt_path=tmp_path / "c" / "epoch=1-step=6.ckpt", loader_fn=plain,
                           every_n_train_steps=3)
    assert any(not torch.equal(a, b) for a, b in zip(params(full_p), params(res_p)))


def test_resumable_loader_state_and_errors():
    dl = ResumableDataLoader(dataset(), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))
    first = [b[1] for b in dl]
    it = iter(dl)
    seen = [next(it)[1] for _ in range(2)]
    state = dl.state_dict()
    assert state["skip"] == 2
    rest = [b[1] for b in it]
    twin = ResumableDataLoader(dataset(), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(99))
    twin.load_state_dict(state)
    again = [b[1] for b in twin]
    assert len(again) == 2 and all(torch.equal(a, b) for a, b in zip(again, rest))
    assert not all(torch.equal(a, b) for a, b in zip(first[2:], rest))  # epochs are shuffled differently
    assert dl.state_dict()["skip"] == 0  # epoch complete: the next one starts at batch 0
    with pytest.raises(ValueError, match="generator"):
        ResumableDataLoader(dataset(), batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="not a ResumableDataLoader state"):
        dl.load_state_dict({"pos": 1})
    assert seen


# -------------------------------------------------------------------- mixed precision
def test_bf16_mixed_on_cpu():
    m, paths = Task(), StepPaths()
    before = params(m)
    tr = trainer(max_epochs=1, precision="bf16-mixed", callbacks=[SCRAPLCallback(), paths])
    tr.fit(m, loader())
    assert m.loss_dtypes == [torch.float32] * 4
    assert paths.paths == _draws(4)
    after = params(m)
    assert all(p.dtype == torch.float32 and bool(torch.isfinite(p).all()) for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


# -------------------------------------------------------------------- logging
class _Recorder(Logger):
    """A logger with a TensorBoard-like ``experiment`` (add_image, add_histogram)."""

    class _Exp:
        def __init__(self) -> None:
            self.images: list = []
            self.histograms: list = []

        def add_image(self, tag, img, step, dataformats="CHW"):
            self.images.append((tag, img.shape, dataformats))

        def add_histogram(self, tag, values, step, bins=None):
            self.histograms.append((tag, values.numel(), len(bins)))

    def __init__(self) -> None:
        super().__init__()
        self._exp = self._Exp()
        self.calls: list = []

    @property
    def experiment(self):
        return self._exp

    @property
    def name(self):
        return "rec"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics, step=None):
        self.calls.append(dict(metrics))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_logged_keys_in_csv_metrics_and_images(tmp_path):
    m = Task()
    csv_logger, rec = CSVLogger(tmp_path), _Recorder()
    tr = trainer(max_epochs=2, logger=[csv_logger, rec], log_every_n_steps=1, callbacks=[SCRAPLCallback(sample_rate=8192.0)])
    tr.fit(m, loader())
    with open(Path(csv_logger.log_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = set(rows[0])
    tags = {path_tag(info, 8192.0): info for info in m.loss_fn.path_infos}
    assert {"scrapl/path", "scrapl/path_prob", "scrapl/paths_seen"} <= keys
    trained = set(m.train_paths)
    for i in trained:
        tag = path_tag(m.loss_fn.path_infos[i], 8192.0)
        assert f"scrapl/loss_by_path/{tag}" in keys and f"scrapl/count_by_path/{tag}" in keys
        assert "Hz" in tag and tag in tags
    counts = {i: m.train_paths.count(i) for i in trained}
    epoch_ends = [c for c in rec.calls if "scrapl/paths_seen" in c]
    assert len(epoch_ends) == 2
    for k, c in enumerate(epoch_ends):
        counted = {key: v for key, v in c.items() if key.startswith("scrapl/count_by_path/")}
        assert sum(counted.values()) == 4  # the epoch's 4 steps
        for i in set(m.train_paths[4 * k : 4 * k + 4]):
            tag = path_tag(m.loss_fn.path_infos[i], 8192.0)
            assert counted[f"scrapl/count_by_path/{tag}"] == m.train_paths[4 * k : 4 * k + 4].count(i)
    assert epoch_ends[-1]["scrapl/paths_seen"] == len(counts)
    assert [r["scrapl/path"] for r in rows if r.get("scrapl/path")] == [f"{float(p)}" for p in m.train_paths]
    assert (Path(csv_logger.log_dir) / "scrapl_path_probs.png").exists()  # CSV: the heatmap as a file
    assert rec.experiment.images and rec.experiment.images[0][0] == "scrapl/path_probs"
    assert rec.experiment.images[0][1][2] == 3
    assert rec.experiment.histograms[-1] == ("scrapl/path_counts", 8, 15)


def test_probability_grid_and_tags():
    built = scrapl.build(CONFIG)
    infos = built.loss.path_infos
    probs = torch.arange(1, 15, dtype=torch.float64)
    probs /= probs.sum()
    grid, rows, cols = probability_grid(infos, probs)
    assert grid.shape == (len(rows), len(cols))
    assert torch.isclose(torch.nansum(grid), torch.tensor(1.0, dtype=torch.float64))
    assert rows == sorted(rows, reverse=True) and cols == sorted(cols)
    tags = [path_tag(i) for i in infos]
    assert len(set(tags)) == len(tags) and all(" " not in t for t in tags)


# -------------------------------------------------------------------- warmup
def test_callback_warmup_equals_library_warmup_and_keeps_data_order():
    m = Task(WARMUP_CONFIG)
    cb = SCRAPLCallback(warmup_batches=2, theta_fn="theta_fn", synth_fn="synth_fn", warmup_options={"n_iter": 3})
    make = _shuffled(torch.utils.data.DataLoader)
    trainer(max_epochs=1, callbacks=[cb], limit_train_batches=1).fit(m, make())

    ref = Task(WARMUP_CONFIG)
    batches = [b for _, b in zip(range(2), make())]
    loss = ref.loss_fn

    def dist_fn(x, x_hat, p):
        return loss.path_distance(x_hat, x, p, reduction="mean")

    C = run_warmup(dist_fn, 5, 2, ref.theta_fn, ref.synth_fn, [{"x": b[0]} for b in batches],
                   list(ref.parameters()), n_iter=3, progress=False)
    assert torch.equal(cb.warmup_curvatures, C)
    assert torch.equal(m.loss_fn.sampler.probs, probs_from_curvatures(C, min_prob_frac=0.5))
    # The warmup batches are the first batches training gets: reading them did not
    # advance the loader's shuffling generator.
    assert torch.equal(m.train_inputs[0], batches[0][0])
    assert not torch.equal(batches[0][0], next(iter(loader()))[0])  # shuffled: the test can fail


def test_probs_from_file_and_folder(tmp_path):
    C = torch.rand(14, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    folder = tmp_path / "w"
    folder.mkdir()
    for p in range(14):
        torch.save(C[p : p + 1], folder / f"vals_{p}.pt")  # the warmup's (1, n_theta) files
    torch.save(probs_from_curvatures(C), folder / "probs.pt")
    want = probs_from_curvatures(C)
    for source in (folder / "probs.pt", folder):
        t = Task()
        trainer(max_epochs=1, limit_train_batches=1, callbacks=[SCRAPLCallback(probs_from=source)]).fit(t, loader())
        assert torch.equal(t.loss_fn.sampler.probs, want)
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        trainer(max_epochs=1, callbacks=[SCRAPLCallback(probs_from=tmp_path / "nothing_here")]).fit(Task(), loader())


# -------------------------------------------------------------------- bad input
def test_errors_at_setup_before_training():
    with pytest.raises(TypeError, match="SCRAPL loss"):
        SCRAPLCallback(loss=torch.nn.MSELoss())
    with pytest.raises(ValueError, match="theta_fn and synth_fn"):
        SCRAPLCallback(warmup_batches=2)
    with pytest.raises(ValueError, match="unknown warmup_options"):
        SCRAPLCallback(warmup_options={"n_iters": 3})

    class NoScrapl(Task):
        def __init__(self):
            super().__init__()
            self.mse = torch.nn.MSELoss()
            del self.loss_fn

    m = NoScrapl()
    with pytest.raises(TypeError, match="found no SCRAPL loss"):
        trainer(max_epochs=1, callbacks=[SCRAPLCallback()]).fit(m, loader())
    with pytest.raises(TypeError, match="not a SCRAPL loss"):
        trainer(max_epochs=1, callbacks=[SCRAPLCallback(loss="mse")]).fit(m, loader())

    m = Task(plain_optimizer=True)
    with pytest.raises(TypeError, match=r"Adam is not path-aware.*built\.optimizer.*p_adam_saga"):
        trainer(max_epochs=1, callbacks=[SCRAPLCallback()]).fit(m, loader())
    assert m.n_training_steps_called == 0

    m = Task()
    cb = SCRAPLCallback(warmup_batches=8, theta_fn="theta_fn", synth_fn="synth_fn")
    with pytest.raises(ValueError, match="gives only 4 batches"):
        trainer(max_epochs=1, callbacks=[cb]).fit(m, loader())
    with pytest.raises(ValueError, match="needs a train dataloader with batches"):
        trainer(max_epochs=1, limit_train_batches=0, callbacks=[cb]).fit(m, loader())
    assert m.n_training_steps_called == 0

    uniform = Task({**CONFIG, "sampler": {"name": "uniform"}})
    cb = SCRAPLCallback(warmup_batches=1, theta_fn="theta_fn", synth_fn="synth_fn")
    with pytest.raises(TypeError, match="theta_is"):
        trainer(max_epochs=1, callbacks=[cb]).fit(uniform, loader())
    with pytest.raises(ValueError, match="no method 'nope'"):
        trainer(max_epochs=1, callbacks=[SCRAPLCallback(warmup_batches=1, theta_fn="nope", synth_fn="synth_fn")]).fit(
            Task(), loader())
