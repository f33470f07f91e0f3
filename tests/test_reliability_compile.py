"""``torch.compile`` around the loss: a compiled training step (``loss(x, y)`` and
``.backward()`` inside the compiled function) runs the loss and its backward
eagerly, with one graph break, no recompilation as the paths change, and exactly the
eager paths, values and gradients; the JTFS's entry points work inside compiled
functions.  (Before, dynamo traced the loss and the autograd backward frame by frame
and recompiled at every new path, a minute in the demo's setting, and the JTFS's
forward failed inside ``torch.compile`` with an ``InternalTorchDynamoError``.)"""

from __future__ import annotations

import warnings

import pytest
import torch

import scrapl

dynamo_testing = pytest.importorskip("torch._dynamo.testing")

CONFIGS = {
    "jtfs": ({"name": "jtfs", "shape": 2048, "J": 8, "Q1": 4, "Q2": 1, "J_fr": 2, "Q_fr": 1}, (2, 1, 2048)),
    "scattering1d": ({"name": "scattering1d", "shape": 2048, "J": 6, "Q": 4}, (2, 1, 2048)),
    "scattering2d": ({"name": "scattering2d", "shape": [32, 32], "J": 2, "L": 4}, (2, 1, 32, 32)),
}
STEPS = 6


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch._dynamo.reset()


def _run(name: str, compiled: bool):
    transform, shape = CONFIGS[name]
    loss = scrapl.build({"transform": transform, "seed": 7}).loss
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)

    def step(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        value = loss(a, b)
        value.backward()
        return value

    counter = dynamo_testing.CompileCounter()
    fn = torch.compile(step, backend=counter) if compiled else step
    paths, values, grads, graphs = [], [], [], []
    for _ in range(STEPS):
        xx = x.clone().requires_grad_(True)
        values.append(fn(xx, y).detach())
        paths.append(loss.consume_path())  # as the path-aware optimizers do
        grads.append(xx.grad)
        graphs.append(counter.frame_count)
    return paths, values, grads, graphs


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_compiled_training_step_equals_eager_without_recompiling(name: str) -> None:
    paths, values, grads, _ = _run(name, compiled=False)
    c_paths, c_values, c_grads, graphs = _run(name, compiled=True)
    assert len(set(paths)) > 1  # the steps visit several paths (several shapes)
    assert c_paths == paths
    for v, cv, g, cg in zip(values, c_values, grads, c_grads):
        torch.testing.assert_close(cv, v, rtol=0, atol=0)
        torch.testing.assert_close(cg, g, rtol=0, atol=0)
    # nothing of the loss is traced: no graph is compiled after the first step
    assert graphs[-1] == graphs[0], graphs


def test_jtfs_entry_points_inside_compiled_functions() -> None:
    transform, shape = CONFIGS["jtfs"]
    loss = scrapl.SCRAPLLoss(**{k: v for k, v in transform.items() if k != "name"})
    jtfs = loss.transform
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
    calls = {
        "forward": lambda a, b: jtfs(a),
        "forward_full": lambda a, b: jtfs.forward_full(a),
        "forward_first_order": lambda a, b: jtfs.forward_first_order(a),
        "forward_path": lambda a, b: jtfs.forward_path(a, 3),
        "forward_path_pair": lambda a, b: jtfs.forward_path_pair(a, b, 3),
        "full_distance": lambda a, b: loss.full_distance(a, b),
        "path_distance": lambda a, b: loss.path_distance(a, b, 3),
        "loss": lambda a, b: loss(a, b, path_idx=3),
    }
    for what, fn in calls.items():
        expected = fn(x, y)
        got = torch.compile(fn, backend="eager")(x, y)
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=what)


@pytest.mark.parametrize("optimizer", ["p_adam", "p_saga", "p_adam_saga"])
def test_compiled_step_with_a_path_aware_optimizer(optimizer: str) -> None:
    """``opt.step()`` inside the compiled step as well: the same parameters as
    eagerly, and nothing compiled after the first step."""
    transform, shape = CONFIGS["jtfs"]

    def run(compiled: bool):
        torch._dynamo.reset()
        torch.manual_seed(0)
        built = scrapl.build({"transform": transform, "seed": 7, "optimizer": {"name": optimizer, "lr": 1e-3}})
        model = torch.nn.Linear(shape[-1], shape[-1])
        loss, opt = built.loss, built.optimizer(model.parameters())
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)

        def step(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            opt.zero_grad()
            value = loss(model(a), b)
            value.backward()
            opt.step()
            return value

        counter = dynamo_testing.CompileCounter()
        fn = torch.compile(step, backend=counter) if compiled else step
        values, graphs = [], []
        for _ in range(STEPS):
            values.append(fn(x, y).detach())
            graphs.append(counter.frame_count)
        return values, model.weight.detach().clone(), graphs

    values, weight, _ = run(False)
    c_values, c_weight, graphs = run(True)
    torch.testing.assert_close(torch.stack(c_values), torch.stack(values), rtol=0, atol=0)
    torch.testing.assert_close(c_weight, weight, rtol=0, atol=0)
    assert graphs[-1] == graphs[0], graphs
