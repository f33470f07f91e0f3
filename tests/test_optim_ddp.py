"""DistributedDataParallel with the path-aware optimizers: 2 CPU processes (gloo),
different data per rank, the same path on every rank at every step (drawn from a
generator with the same seed, as scrapl's sampler is), identical parameters and
optimizer state on both ranks, equal to a single-process run on both ranks' data."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import scrapl.optim as O

N_STEPS = 12
N_PATHS = 5
PATH_SEED = 1234


def _net() -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net


def _loss(model: torch.nn.Module, x: torch.Tensor, path: int) -> torch.Tensor:
    target = torch.cos(torch.arange(2, dtype=x.dtype) * (path + 1))
    return ((model(x) - target) ** 2).mean() * (1.0 + 0.5 * path)


def _rank_data(rank: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)  # every rank sees different data
    return [torch.randn(3, 4, generator=g) for _ in range(N_STEPS)]


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = torch.nn.parallel.DistributedDataParallel(_net())
        sampler_gen = torch.Generator().manual_seed(PATH_SEED)  # same seed on every rank
        current: dict[str, int | None] = {"path": None}
        drawn: list[int] = []
        opt = O.PAdamSAGA(model.parameters(), N_PATHS, lr=1e-2, path_source=lambda: current["path"])
        for x in _rank_data(rank):
            current["path"] = int(torch.randint(0, N_PATHS, (1,), generator=sampler_gen))
            drawn.append(current["path"])
            opt.zero_grad()
            _loss(model, x, current["path"]).backward()  # DDP all-reduces (averages) here
            opt.step()
        torch.save(
            {"params": [p.detach().clone() for p in model.module.parameters()], "optim": opt.state_dict(), "paths": drawn},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
        dist.barrier()  # both ranks done before the process group is torn down
    finally:
        dist.destroy_process_group()


def _flatten_state(sd: dict) -> list:
    out = []
    for pid in sorted(sd["state"]):
        st = sd["state"][pid]
        for key in sorted(st):
            v = st[key]
            if isinstance(v, dict):
                for i in sorted(v):
                    out.append((pid, key, i, v[i]))
            else:
                out.append((pid, key, None, v))
    return out


def test_ddp_two_ranks_same_paths_identical_state(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["paths"] == r1["paths"] and len(set(r0["paths"])) > 1
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.equal(a, b)
    s0, s1 = _flatten_state(r0["optim"]), _flatten_state(r1["optim"])
    assert len(s0) == len(s1) > 0
    for (k0, v0), (k1, v1) in zip(((x[:3], x[3]) for x in s0), ((x[:3], x[3]) for x in s1)):
        assert k0 == k1
        assert torch.equal(v0, v1) if isinstance(v0, torch.Tensor) else v0 == v1

    # Single process on both ranks' data: the all-reduced gradient is the mean.
    model = _net()
    opt = O.PAdamSAGA(model.parameters(), N_PATHS, lr=1e-2)
    d0, d1 = _rank_data(0), _rank_data(1)
    for x0, x1, path in zip(d0, d1, r0["paths"]):
        opt.zero_grad()
        (0.5 * (_loss(model, x0, path) + _loss(model, x1, path))).backward()
        opt.step(path=path)
    for a, b in zip(model.parameters(), r0["params"]):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)
    # And without DDP's averaging (rank 0's data only) the result differs: the test can fail.
    solo = _net()
    opt = O.PAdamSAGA(solo.parameters(), N_PATHS, lr=1e-2)
    for x0, path in zip(d0, r0["paths"]):
        opt.zero_grad()
        _loss(solo, x0, path).backward()
        opt.step(path=path)
    assert max((a.detach() - b).abs().max().item() for a, b in zip(solo.parameters(), r0["params"])) > 1e-4
