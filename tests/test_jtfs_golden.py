"""JTFS against golden data from the reference (Kymatio inside scrapl-loss 0.1.0).

Fixtures ``tests/fixtures/jtfs_*.pt`` come from ``scripts/make_jtfs_golden.py`` (run
with the scratch interpreter holding the reference).  Tolerance: relative L2 error
<= 1e-5 in float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from scrapl.transforms.jtfs import JTFS

FIXTURES = Path(__file__).parent / "fixtures"
RTOL_L2 = 1e-5
_cache: dict[str, tuple[dict[str, Any], JTFS]] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small ops: two OpenMP threads on a loaded 2-core box mostly wait."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def golden(name: str) -> tuple[dict[str, Any], JTFS]:
    if name not in _cache:
        data = torch.load(FIXTURES / f"jtfs_{name}.pt", weights_only=True)
        _cache[name] = (data, JTFS(**data["params"]))
    return _cache[name]


ALL = ["small", "tf", "paper", "tr808"]


@pytest.mark.parametrize("name", ALL)
def test_geometry_keys_and_path_order(name: str) -> None:
    data, m = golden(name)
    assert (m.N_pad, m.pad_left, m.pad_right, m.N_fr) == (data["N_pad"], data["pad_left"], data["pad_right"],
                                                          data["N_fr"])
    B, C, F_out, T_out = data["out_shape"]
    assert (m.n_first + m.n_paths, m.F_out, m.T_out) == (C, F_out, T_out)
    assert m.n_first == data["n_first"] and m.n_paths == data["n_paths"]
    assert m.channel_keys == [tuple(k) for k in data["keys"]]
    # path i <-> reference SCRAPLLoss(...).scrapl_keys[i]
    assert m.paths == [tuple(k) for k in data["scrapl_keys"]]


def test_path_counts_of_the_paper_configs() -> None:
    assert golden("paper")[1].n_paths == 315
    assert golden("tr808")[1].n_paths == 483


@pytest.mark.parametrize("name", ALL)
def test_filter_parameters_match(name: str) -> None:
    data, m = golden(name)
    t = m.filter_table
    f = data["filters"]
    for ours, key in [("psi1", "psi1"), ("psi2", "psi2")]:
        ref = f[key]
        assert torch.equal(torch.as_tensor(t[f"{ours}_xi"]), ref[:, 0])
        assert torch.equal(torch.as_tensor(t[f"{ours}_sigma"]), ref[:, 1])
        assert torch.equal(torch.as_tensor(t[f"{ours}_j"]).double(), ref[:, 2])
    ref = f["psi_fr"]
    assert torch.equal(torch.as_tensor(t["psi_fr_xi"]), ref[:, 0])
    assert torch.equal(torch.as_tensor(t["psi_fr_sigma"]), ref[:, 1])
    assert torch.equal(torch.as_tensor(t["psi_fr_j"]).double(), ref[:, 2])


@pytest.mark.parametrize("name", ["small", "tf"])
def test_full_output_matches(name: str) -> None:
    data, m = golden(name)
    out = m.forward_full(data["x"])
    assert list(out.shape) == data["out_shape"]
    out = out[:, data["channels"]]
    assert rel_l2(out, data["full"]) <= RTOL_L2
    for c in range(out.shape[1]):  # every channel on its own, too
        assert rel_l2(out[:, c], data["full"][:, c]) <= RTOL_L2, c


@pytest.mark.parametrize("name", ["paper", "tr808"])
def test_first_order_channels_match(name: str) -> None:
    data, m = golden(name)
    out = m.forward_first_order(data["x"])
    assert rel_l2(out, data["full"][:, : m.n_first]) <= RTOL_L2


def _some_paths(data: dict[str, Any], m: JTFS) -> list[tuple[int, int]]:
    """(path index, fixture column) pairs for stored channels: a few spread ones."""
    chan = data["channels"]
    pairs = [(c - m.n_first, k) for k, c in enumerate(chan) if c >= m.n_first]
    step = max(1, len(pairs) // 4)
    return pairs[::step] + [pairs[-1]]


@pytest.mark.parametrize("name", ALL)
def test_forward_path_cropped_equals_full_channel(name: str) -> None:
    data, m = golden(name)
    for i, col in _some_paths(data, m):
        out = m.forward_path(data["x"], i)
        assert out.shape == (data["x"].shape[0], m.F_out, m.T_out)
        assert rel_l2(out, data["full"][:, col]) <= RTOL_L2, i


@pytest.mark.parametrize("name", ALL)
def test_forward_path_uncropped_equals_scrapl_single_path(name: str) -> None:
    data, m = golden(name)
    for i, ref in zip(data["single_paths"], data["single"]):
        out = m.forward_path(data["x"], i, crop_time=False)
        assert out.shape == ref.shape == (data["x"].shape[0], m.F_out, m.T_out_padded)
        assert rel_l2(out, ref) <= RTOL_L2, i


def test_gradient_of_full_output_matches() -> None:
    data, m = golden("small")
    x = data["x"].clone().requires_grad_(True)
    out = m.forward_full(x)
    C, F_out, T_out = out.shape[1:]
    c = torch.arange(C, dtype=torch.float32)[:, None, None]
    f = torch.arange(F_out, dtype=torch.float32)[None, :, None]
    t = torch.arange(T_out, dtype=torch.float32)[None, None, :]
    (out * torch.cos(0.37 * c + 0.11 * f + 0.05 * t)).sum().backward()
    assert rel_l2(x.grad, data["grad_full"]) <= RTOL_L2


@pytest.mark.parametrize("name", ["small", "tf", "paper"])
def test_scrapl_distance_and_gradient_match(name: str) -> None:
    """The reference SCRAPL loss: mean over the batch of the L2 norm of the uncropped
    single-path coefficient difference, target without graph."""
    data, m = golden(name)
    for i, grad, loss in zip(data["grad_paths"], data["grad_scrapl"], data["loss_scrapl"]):
        x = data["x"].clone().requires_grad_(True)
        with torch.no_grad():
            s_target = m.forward_path(data["x_target"], i, crop_time=False)
        dist = torch.linalg.vector_norm(s_target - m.forward_path(x, i, crop_time=False), dim=(-2, -1)).mean()
        dist.backward()
        assert abs(float(dist.detach()) - loss) <= RTOL_L2 * loss
        assert rel_l2(x.grad, grad) <= RTOL_L2, i


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["small", "paper"])
def test_golden_and_gradients_on_cuda(name: str) -> None:
    """Same golden tolerances on a GPU: the filters are buffers that move with .cuda()."""
    data, m_cpu = golden(name)
    m = JTFS(**data["params"]).cuda()
    x = data["x"].cuda()
    for i, col in _some_paths(data, m):
        assert rel_l2(m.forward_path(x, i).cpu(), data["full"][:, col]) <= RTOL_L2, i
    for i, ref in zip(data["single_paths"], data["single"]):
        assert rel_l2(m.forward_path(x, i, crop_time=False).cpu(), ref) <= RTOL_L2, i
    for i, grad in zip(data["grad_paths"], data["grad_scrapl"]):
        xg = x.clone().requires_grad_(True)
        with torch.no_grad():
            s_target = m.forward_path(data["x_target"].cuda(), i, crop_time=False)
        torch.linalg.vector_norm(s_target - m.forward_path(xg, i, crop_time=False), dim=(-2, -1)).mean().backward()
        assert rel_l2(xg.grad.cpu(), grad) <= RTOL_L2, i


@pytest.mark.parametrize("name", ["small", "paper"])
def test_accelerator_route_emulated_on_cpu(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code an accelerator runs (no native kernels, no buffer pool, one filter
    chunk per group, index gathers, whole-length frequential chunks, hypot modulus,
    torch FFTs without out=), forced on the CPU: same golden tolerances, so the GPU
    route stays checked on machines without one."""
    from scrapl.transforms.jtfs import core, native

    def hypot_modulus(re: torch.Tensor, im: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        torch.hypot(re, im, out=out)
        return out.add_(core.MODULUS_FLOOR)

    monkeypatch.setattr(core, "_use_slices", lambda ext, W: False)
    monkeypatch.setattr(core, "_filter_chunks", lambda B, nf, L, device: [(0, nf)])
    monkeypatch.setattr(core, "_chunk_size", lambda batch, rows, length, device: length)
    monkeypatch.setattr(core, "_pool_torch_fft", lambda x: False)
    monkeypatch.setattr(core, "_modulus_torch", hypot_modulus)
    data, _ = golden(name)
    m = JTFS(**data["params"])
    m.buffer_pool = None
    with native.disabled():
        for i, col in _some_paths(data, m):
            assert rel_l2(m.forward_path(data["x"], i), data["full"][:, col]) <= RTOL_L2, i
        for i, grad in zip(data["grad_paths"], data["grad_scrapl"]):
            xg = data["x"].clone().requires_grad_(True)
            with torch.no_grad():
                s_target = m.forward_path(data["x_target"], i, crop_time=False)
            torch.linalg.vector_norm(s_target - m.forward_path(xg, i, crop_time=False),
                                     dim=(-2, -1)).mean().backward()
            assert rel_l2(xg.grad, grad) <= RTOL_L2, i
