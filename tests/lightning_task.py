"""A tiny sound-matching task for the Lightning tests (imported by them and by the
DDP script ``lightning_ddp_script.py``): an encoder predicts two parameters of a
differentiable synth, a SCRAPL loss on a 14-path JTFS compares rendered and target
signals (1024 samples)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning.pytorch as pl
import scrapl

N = 1024
CONFIG: dict[str, Any] = {
    "transform": {"name": "jtfs", "shape": N, "J": 4, "Q1": 4, "Q2": 1, "J_fr": 2, "Q_fr": 1},
    "sampler": {"name": "theta_is", "n_theta": 2},
    "optimizer": {"name": "p_adam_saga"},
    "seed": 0,
}
WARMUP_CONFIG: dict[str, Any] = {  # 5 paths: the warmup tests stay cheap
    **CONFIG,
    "transform": {"name": "jtfs", "shape": N, "J": 3, "Q1": 1, "Q2": 1, "J_fr": 1, "Q_fr": 1},
    "sampler": {"name": "theta_is", "n_theta": 2, "min_prob_frac": 0.5},
}


class Synth(nn.Module):
    """theta (B, 2) in [0, 1] -> (B, 1, N): an AM tone; theta[0] sets the carrier,
    theta[1] the modulation rate.  Deterministic and parameter-free."""

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        t = torch.arange(N, dtype=theta.dtype, device=theta.device) / N
        f = 40.0 + 80.0 * theta[:, :1]
        am = 2.0 + 10.0 * theta[:, 1:2]
        x = torch.sin(2 * math.pi * f * t) * (1.0 + 0.8 * torch.sin(2 * math.pi * am * t))
        return x.unsqueeze(1)


def dataset(n: int = 16, seed: int = 1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, 2, generator=g)
    with torch.no_grad():
        x = Synth()(theta)
    return TensorDataset(x, theta)


def loader(n: int = 16, batch_size: int = 4, **kwargs: Any) -> DataLoader:
    return DataLoader(dataset(n), batch_size=batch_size, **kwargs)


class Task(pl.LightningModule):
    """Encoder + synth + SCRAPL loss.  ``manual=True`` uses manual optimization
    (with gradient clipping at ``clip`` and the scheduler stepped per step)."""

    def __init__(self, config: dict[str, Any] | None = None, lr: float = 3e-2, *, manual: bool = False,
                 scheduler: bool = False, clip: float | None = None, plain_optimizer: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.built = scrapl.build(config or CONFIG)
        self.loss_fn = self.built.loss
        self.encoder = nn.Sequential(nn.AvgPool1d(32), nn.Flatten(), nn.Linear(N // 32, 8), nn.Tanh(),
                                     nn.Linear(8, 2), nn.Sigmoid())
        self.synth = Synth()
        self.lr = lr
        self.automatic_optimization = not manual
        self.use_scheduler = scheduler
        self.clip = clip
        self.plain_optimizer = plain_optimizer
        self.loss_dtypes: list[torch.dtype] = []
        self.train_paths: list[int] = []  # path of every training forward
        self.train_inputs: list[torch.Tensor] = []  # every training batch's signals
        self.n_training_steps_called = 0

    def theta_fn(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def synth_fn(self, theta: torch.Tensor) -> torch.Tensor:
        return self.synth(theta)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.n_training_steps_called += 1
        x = batch[0]
        self.train_inputs.append(x.detach().clone())
        loss = self.loss_fn(self.synth(self.encoder(x)), x)
        self.loss_dtypes.append(loss.dtype)
        self.train_paths.append(int(self.loss_fn.curr_path_idx))
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        if self.clip is not None:
            self.clip_gradients(opt, gradient_clip_val=self.clip, gradient_clip_algorithm="norm")
        opt.step()
        if self.use_scheduler:
            self.lr_schedulers().step()
        return None

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = batch[0]
        self.log("val_loss", self.loss_fn(self.synth(self.encoder(x)), x), batch_size=x.shape[0])

    def configure_optimizers(self) -> Any:
        if self.plain_optimizer:
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        opt = self.built.optimizer(self.parameters(), lr=self.lr)
        if not self.use_scheduler:
            return opt
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class StepPaths(pl.Callback):
    """Records the optimizer's path after every optimizer step."""

    def __init__(self) -> None:
        self.paths: list[int] = []
        self._last = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last = trainer.global_step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step != self._last:  # an optimizer step happened
            self._last = trainer.global_step
            self.paths.append(int(trainer.optimizers[0].last_path))


def trainer(**kwargs: Any) -> pl.Trainer:
    base: dict[str, Any] = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                                enable_model_summary=False, enable_checkpointing=False)
    base.update(kwargs)
    return pl.Trainer(**base)


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]
