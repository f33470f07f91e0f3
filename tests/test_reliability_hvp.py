"""A theta-IS warmup through the JTFS (whose fused backward kernels have no vmap
batching rule) runs without a warning, and equals the all-loop estimate."""

from __future__ import annotations

import warnings

import torch

from scrapl.samplers.curvature import CurvatureEstimator
from scrapl.transforms.jtfs import JTFS


def test_a_jtfs_warmup_chooses_the_loop_without_a_warning() -> None:
    torch.manual_seed(0)
    jtfs = JTFS(shape=1024, J=4, Q1=4, Q2=1, J_fr=1, Q_fr=1)
    enc = torch.nn.Sequential(torch.nn.AvgPool1d(32), torch.nn.Flatten(), torch.nn.Linear(32, 2), torch.nn.Sigmoid())
    dec = torch.nn.Sequential(torch.nn.Linear(2, 1024), torch.nn.Tanh())
    kws = [{"x": torch.rand(2, 1, 1024)}]

    def dist(x: torch.Tensor, x_hat: torch.Tensor, i: int) -> torch.Tensor:
        return (jtfs.forward_path(x_hat, i) - jtfs.forward_path(x, i)).flatten(1).norm(dim=1).mean()

    def curv(vectorize: bool) -> tuple[torch.Tensor, CurvatureEstimator]:
        est = CurvatureEstimator(lambda x: enc(x), lambda t: dec(t).unsqueeze(1), kws, list(enc.parameters()), n_iter=3,
                                 vectorize=vectorize)
        return est.path_curvatures(dist, 1, generator=torch.Generator().manual_seed(0)), est

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, est = curv(True)
    assert est.vectorize and "out=" in str(est.hvp_loop_reason)
    torch.testing.assert_close(out, curv(False)[0], rtol=1e-6, atol=0)
