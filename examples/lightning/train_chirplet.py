"""Unsupervised chirplet sound matching with PyTorch Lightning and a SCRAPL loss.

An encoder predicts the AM and FM rates of a chirplet from its audio; the
chirplet synthesizer renders the prediction (with its own random delay); the SCRAPL
loss (JTFS, theta-IS path sampling, P-Adam + P-SAGA) compares rendered and target
audio.  The validation metric is the L1 error of the predicted parameters (chance
is about 0.33).

    pip install "scrapl[lightning]"
    python examples/lightning/train_chirplet.py --max-steps 300 --out runs/chirplet
    python examples/lightning/train_chirplet.py --max-steps 600 --out runs/chirplet \\
        --ckpt-path runs/chirplet/checkpoints/last.ckpt           # resume, bit-identically

Logs (CSV by default, ``--logger tensorboard`` with tensorboard installed) hold the
path of every step, the per-path loss and counts with their physical labels, and
the theta-IS probability heatmap; checkpoints hold the sampler and optimizer state.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

import scrapl
from scrapl.demo.model import ChirpletEncoder
from scrapl.demo.synth import ChirpletSynth
from scrapl.integrations.lightning import ResumableDataLoader, SCRAPLCallback


class Chirplets(Dataset):
    """Chirplet ``index`` of a seeded set: ``(audio (1, N), theta (2,), delay_hat ())``.

    Everything is drawn from a generator seeded with ``(seed, index)``, so an item
    is the same in every epoch, process and worker; ``delay_hat`` is the delay the
    synth uses when it renders the prediction (independent of the target's).
    """

    def __init__(self, synth: ChirpletSynth, size: int, seed: int) -> None:
        self.synth, self.size, self.seed = synth, size, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        theta = torch.rand(1, 2, generator=g)
        with torch.no_grad():
            x = self.synth(theta, generator=g)
        return x[0], theta[0], self.synth.sample_shifts(1, g)[0]


class ChirpletMatcher(pl.LightningModule):
    """Encoder + synth, trained through the SCRAPL loss of ``scrapl.build(config)``."""

    def __init__(self, config: dict[str, Any], n_samples: int, sr: float, lr: float) -> None:
        super().__init__()
        self.built = scrapl.build(config)
        self.loss_fn = self.built.loss  # a submodule: its sampler state is in checkpoints
        self.encoder = ChirpletEncoder(n_samples)
        self.synth = ChirpletSynth(n_samples, sr)
        self.lr = lr

    def theta_fn(self, x: Tensor) -> Tensor:  # used by the theta-IS warmup
        return self.encoder(x)

    def synth_fn(self, theta: Tensor, shifts: Tensor) -> Tensor:
        return self.synth(theta, shifts=shifts)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, _theta, shifts = batch
        loss = self.loss_fn(self.synth_fn(self.theta_fn(x), shifts), x)
        self.log("train/loss", loss, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, theta, _ = batch
        self.log("val/theta_l1", (self.encoder(x) - theta).abs().mean(), batch_size=x.shape[0])

    def configure_optimizers(self) -> Any:
        return self.built.optimizer(self.parameters(), lr=self.lr)  # P-Adam + P-SAGA


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/chirplet", help="log and checkpoint directory")
    p.add_argument("--max-steps", type=int, default=300, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--n-samples", type=int, default=8192, help="signal length (the sample rate equals it: 1 s)")
    p.add_argument("--J", type=int, default=10, help="JTFS octaves (2**J <= n-samples)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (P-Adam + P-SAGA; see docs/best_practices.md)")
    p.add_argument("--warmup-batches", type=int, default=1, help="theta-IS warmup batches (0: uniform paths)")
    p.add_argument("--warmup-iters", type=int, default=20, help="power-iteration steps of the warmup")
    p.add_argument("--train-size", type=int, default=512)
    p.add_argument("--val-size", type=int, default=64)
    p.add_argument("--val-every", type=int, default=100, help="validate every this many steps")
    p.add_argument("--logger", choices=("csv", "tensorboard"), default="csv")
    p.add_argument("--precision", default="32-true", help="e.g. 32-true, bf16-mixed")
    p.add_argument("--devices", type=int, default=1, help="CPU processes (> 1: DDP with gloo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-path", default=None, help="resume from this checkpoint")
    args = p.parse_args(argv)
    for name in ("max_steps", "batch_size", "n_samples", "train_size", "val_size", "val_every", "devices",
                 "warmup_iters"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_batches < 0:
        p.error("--warmup-batches must be >= 0")
    if 2 ** args.J > args.n_samples:
        p.error(f"--J {args.J}: 2**J must be <= --n-samples {args.n_samples}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.logger == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            print("error: --logger tensorboard needs the tensorboard package (pip install tensorboard)",
                  file=sys.stderr)
            return 2
    n, sr = args.n_samples, float(args.n_samples)
    config = {
        "transform": {"name": "jtfs", "shape": n, "J": args.J, "Q1": 8, "Q2": 1, "J_fr": 3, "Q_fr": 1,
                      "T": n // 2, "F": 8},
        "sampler": {"name": "theta_is", "n_theta": 2, "min_prob_frac": 0.1},
        "optimizer": {"name": "p_adam_saga"},
        "seed": args.seed,
    }
    pl.seed_everything(args.seed, verbose=False)  # the encoder's initial weights
    model = ChirpletMatcher(config, n, sr, args.lr)
    synth = ChirpletSynth(n, sr)
    train_set = Chirplets(synth, args.train_size, args.seed)
    # Standardise the encoder's features on unlabeled training signals (the buffers
    # are saved in checkpoints, so a resumed run keeps them).
    if len(train_set) >= 2:
        model.encoder.fit_normalisation(torch.stack([train_set[i][0] for i in range(min(64, len(train_set)))]))
    train = ResumableDataLoader(train_set, batch_size=args.batch_size,
                                shuffle=True, generator=torch.Generator().manual_seed(args.seed), drop_last=True)
    val = torch.utils.data.DataLoader(Chirplets(synth, args.val_size, args.seed + 1), batch_size=args.batch_size)
    callback = SCRAPLCallback(
        warmup_batches=args.warmup_batches,
        theta_fn="theta_fn",
        synth_fn="synth_fn",
        warmup_synth_kwargs=lambda batch: {"shifts": batch[2]},  # the delays the synth renders with
        warmup_params=lambda module: module.encoder.parameters(),
        warmup_options={"n_iter": args.warmup_iters, "progress": True},
        sample_rate=sr,
    )
    if args.logger == "csv":
        logger: Any = CSVLogger(args.out, name="logs")
    else:
        logger = TensorBoardLogger(args.out, name="logs")
    checkpoints = ModelCheckpoint(dirpath=f"{args.out}/checkpoints", save_last=True,
                                  every_n_train_steps=args.val_every)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        precision=args.precision,
        max_steps=args.max_steps,
        val_check_interval=min(args.val_every, len(train)),
        check_val_every_n_epoch=None,
        log_every_n_steps=min(10, args.max_steps),
        logger=logger,
        callbacks=[callback, checkpoints],
        enable_progress_bar=sys.stderr.isatty(),
    )
    trainer.fit(model, train, val, ckpt_path=args.ckpt_path)
    if trainer.is_global_zero:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        print(f"steps {trainer.global_step}; " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
        print(f"logs in {logger.log_dir}; checkpoints in {args.out}/checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
