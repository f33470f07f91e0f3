"""theta-IS warmup inside a torch.distributed group: 2 CPU processes (gloo), each
computing its share of the paths, every rank returning the complete (P, U) result,
equal to a single-process run."""

from __future__ import annotations

import os
from collections import Counter

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scrapl.samplers import probs_from_curvatures, run_warmup

N = 64
P = 5
U = 2


def _dist(x, x_hat, p):
    X = torch.fft.rfft(x.reshape(-1, N)).abs()[:, 1 + 5 * p : 6 + 5 * p]
    Xh = torch.fft.rfft(x_hat.reshape(-1, N)).abs()[:, 1 + 5 * p : 6 + 5 * p]
    return torch.linalg.vector_norm(X - Xh, dim=-1).mean()


def _problem():
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.AvgPool1d(4), torch.nn.Linear(N // 4, 4), torch.nn.Tanh(), torch.nn.Linear(4, U), torch.nn.Sigmoid())
    dec = torch.nn.Sequential(torch.nn.Linear(U, 6), torch.nn.Tanh(), torch.nn.Linear(6, N))
    g = torch.Generator().manual_seed(1)
    kws = [{"x": torch.rand(3, 1, N, generator=g)}]
    return (lambda x: enc(x.squeeze(1))), (lambda t: dec(t).unsqueeze(1)), kws, list(enc.parameters())


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        calls: Counter = Counter()

        def counting(x, x_hat, p):
            calls[p] += 1
            return _dist(x, x_hat, p)

        theta_fn, synth_fn, kws, params = _problem()
        # a different generator seed per rank: rank 0's seed is broadcast
        gen = torch.Generator().manual_seed(10 + rank)
        vals = run_warmup(counting, P, U, theta_fn, synth_fn, kws, params, save_dir=os.path.join(out_dir, "warmup"), progress=False, generator=gen)
        torch.save({"vals": vals, "paths": sorted(calls)}, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # both ranks done before the process group is torn down
    finally:
        dist.destroy_process_group()


def test_distributed_warmup_two_ranks(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["paths"] == [0, 1, 2] and r1["paths"] == [3, 4]  # contiguous shares
    theta_fn, synth_fn, kws, params = _problem()
    single = run_warmup(_dist, P, U, theta_fn, synth_fn, kws, params, progress=False, generator=torch.Generator().manual_seed(10))
    assert torch.isfinite(single).all()
    # same seeds; MKL's float32 products may round differently with memory alignment
    torch.testing.assert_close(r0["vals"], single, rtol=1e-5, atol=0)
    torch.testing.assert_close(r1["vals"], single, rtol=1e-5, atol=0)
    files = sorted(os.listdir(tmp_path / "warmup"))
    assert files == ["probs.pt"] + [f"vals_{p}.pt" for p in range(P)] + ["warmup.json"]
    torch.testing.assert_close(torch.load(tmp_path / "warmup" / "probs.pt", weights_only=True),
                               probs_from_curvatures(single), rtol=1e-5, atol=0)
