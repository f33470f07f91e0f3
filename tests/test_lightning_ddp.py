"""Lightning DDP on CPU: ``Trainer(accelerator="cpu", devices=2, strategy="ddp")``
(gloo), with the callback's theta-IS warmup sharded over the two ranks.  Both ranks
train on different data, draw the same path at every step and end with identical
parameters, optimizer state and probabilities; the warmup equals the library's on
rank 0's first batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning.pytorch")

from lightning_task import WARMUP_CONFIG, Task  # noqa: E402
from scrapl.samplers import probs_from_curvatures, run_warmup  # noqa: E402

SCRIPT = Path(__file__).with_name("lightning_ddp_script.py")


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_lightning_ddp_two_ranks(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE",
                                                                       "MASTER_", "RANK"))}
    env["PYTHONWARNINGS"] = "ignore"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    # Different data on the two ranks ...
    assert not torch.equal(r0["inputs"][0], r1["inputs"][0])
    # ... the same paths (4 steps), parameters, optimizer state and probabilities.
    assert r0["paths"] == r1["paths"] == r0["train_paths"] and len(r0["paths"]) == 4
    assert len(set(r0["paths"])) > 1, r0["probs"]
    assert _same(r0["params"], r1["params"])
    assert _same(r0["optim"], r1["optim"]) and r0["optim"]["state"]
    assert torch.equal(r0["probs"], r1["probs"])
    assert torch.equal(r0["curvatures"], r1["curvatures"]) and bool(torch.isfinite(r0["curvatures"]).all())

    # The sharded warmup equals the library warmup on rank 0's first batch.
    ref = Task(WARMUP_CONFIG)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        C = run_warmup(lambda x, x_hat, p: ref.loss_fn.path_distance(x_hat, x, p), ref.loss_fn.n_paths, 2,
                       ref.theta_fn, ref.synth_fn, [{"x": r0["inputs"][0]}], list(ref.parameters()), n_iter=3,
                       progress=False)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(r0["curvatures"], C, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(r0["probs"], probs_from_curvatures(C, min_prob_frac=0.5), rtol=1e-6, atol=0.0)
