"""Two-rank DDP run of the Lightning test task (CPU, gloo), started by
tests/test_lightning_ddp.py as ``python lightning_ddp_script.py OUT_DIR``.
Lightning's ``strategy="ddp"`` launches the second rank by running this script
again; each rank writes what it ended with to ``OUT_DIR/rank{r}.pt``."""

from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from lightning_task import WARMUP_CONFIG, StepPaths, Task, loader, params, trainer  # noqa: E402
from scrapl.integrations.lightning import SCRAPLCallback  # noqa: E402


def main(out_dir: str) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    m, paths = Task(WARMUP_CONFIG), StepPaths()
    cb = SCRAPLCallback(warmup_batches=1, theta_fn="theta_fn", synth_fn="synth_fn", warmup_options={"n_iter": 3})
    tr = trainer(devices=2, strategy="ddp", max_epochs=2, callbacks=[cb, paths])
    tr.fit(m, loader(16, 4))  # 2 batches of 4 per rank and epoch (DistributedSampler)
    torch.save(
        {
            "params": params(m),
            "optim": tr.optimizers[0].state_dict(),
            "paths": paths.paths,
            "train_paths": m.train_paths,
            "inputs": m.train_inputs,
            "probs": m.loss_fn.sampler.probs,
            "curvatures": cb.warmup_curvatures,
            "world": tr.world_size,
        },
        os.path.join(out_dir, f"rank{tr.global_rank}.pt"),
    )
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # both ranks done before the process group is torn down
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
