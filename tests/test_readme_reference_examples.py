"""Every Python example of the reference README runs unchanged with our SCRAPLLoss.

The code blocks below are copied verbatim, in order, from the README of the
reference package ``scrapl-loss`` 0.1.0 (its public documentation; the installed
copy is ``scrapl/README.md`` of the reference's site-packages).  They share one
namespace, as in the README (the warmup example uses ``nn`` imported by the P-Adam
example).  The project's seed README (``/work/shared/seed/scrapl-readme.md``) has
no Python example, only ``pip install scrapl``.

Each block is followed by checks of what its console output in the README shows;
the warmup's curvatures and probabilities are compared with those the reference
computes on the same example (``tests/fixtures/loss_readme_warmup.pt``, written by
``scripts/make_loss_golden.py``).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"

# README: Importing and initializing `SCRAPLLoss` with the minimum required arguments
README_INIT = r'''
# Import SCRAPLLoss from the scrapl Python package
from scrapl import SCRAPLLoss

# Initialize SCRAPLLoss with the minimum required arguments
scrapl_loss = SCRAPLLoss(
    shape=48000,  # Length of x and x_target in samples
    J=12,         # Number of octaves (1st and 2nd order temporal filters)
    Q1=8,         # Wavelets per octave (1st order temporal filters)
    Q2=2,         # Wavelets per octave (2nd order temporal filters)
    J_fr=3,       # Number of octaves (2nd order frequential filters)
    Q_fr=2,       # Wavelets per octave (2nd order frequential filters)
)
'''

# README: Calculating the loss for two signals
README_LOSS = r'''
import torch as tr

# Create two random tensors of shape (batch_size, num_channels, signal_length)
x = tr.randn(4, 1, 48000) # Example input tensor 
x_target = tr.randn(4, 1, 48000) # Example target tensor 
# Compute the SCRAPL loss between x and x_target. Since SCRAPL is stochastic,
# the loss value will be different each time `scrapl_loss()` is called.
loss = scrapl_loss(x, x_target)
print(f"SCRAPL loss: {loss.item()}")
'''

# README: `SCRAPLLoss` utility attributes and methods
README_UTILITY = r'''
print(f"Number of scattering paths: {scrapl_loss.n_paths}")
print(f"Uniform path sampling probability: {scrapl_loss.unif_prob:.6f}")
print(f"Most recently sampled path index (prev. example): {scrapl_loss.curr_path_idx}")

# Calculate the loss for a specific path index
loss = scrapl_loss(x, x_target, path_idx=8)
print(f"Most recently sampled path index (specific): {scrapl_loss.curr_path_idx}")

# Calculate the loss with a random seed for deterministic path sampling
# (this will sample the same path index every time)
loss = scrapl_loss(x, x_target, seed=42)
print(f"Most recently sampled path index (random seed): {scrapl_loss.curr_path_idx}")
print(f"Path sampling statistics (original): {scrapl_loss.path_counts}")

# Get the state dictionary of the SCRAPLLoss instance
state_dict = scrapl_loss.state_dict()

# Clear all state of the SCRAPLLoss instance
scrapl_loss.clear()
print(f"Path sampling statistics (cleared): {scrapl_loss.path_counts}")

# Load a state dictionary into the SCRAPLLoss instance
scrapl_loss.load_state_dict(state_dict)
print(f"Path sampling statistics (loaded): {scrapl_loss.path_counts}")
'''

# README: Using P-Adam and P-SAGA
README_P_ADAM_SAGA = r'''
from torch import nn

# Toy example model
model = nn.Sequential(
    nn.Linear(in_features=48000, out_features=8),
    nn.PReLU(),
    nn.Linear(in_features=8, out_features=48000),
    nn.Tanh(),
)

# Attach the learnable weights of the model to the SCRAPLLoss instance
# for P-Adam and P-SAGA
scrapl_loss.attach_params(model.parameters())

# Since we are using P-Adam and / or P-SAGA, we should use vanilla SGD with no
# momentum and optional weight decay as the downstream optimizer
from torch.optim import SGD
sgd_optimizer = SGD(model.parameters(), lr=1e-4, weight_decay=0.01)

# Example forward and backward step with P-Adam and P-SAGA now active
sgd_optimizer.zero_grad()
x_hat = model(x)
loss = scrapl_loss(x_hat, x_target)
loss.backward()
# Even though vanilla SGD is called here, the gradients of the model parameters
# have been modified by P-Adam and P-SAGA under the hood during the backward pass
sgd_optimizer.step()

# To detach parameters (generally not necessary), simply attach an empty list
scrapl_loss.attach_params([])
'''

# README: Importance Sampling Warmup
README_WARMUP = r'''
import torch as tr
from scrapl import SCRAPLLoss

# Setup
tr.set_printoptions(precision=4, sci_mode=False)
tr.manual_seed(42)
bs = 4
n_ch = 1
n_samples = 8096
# Number of parameters output by the encoder and input to the decoder (synth)
n_theta = 3
# Number of batches to use for warmup; when possible, one large batch filling all
# available GPU memory is more efficient than many smaller batches
n_batches = 1

# Provide a neural network encoder that outputs `n_theta` parameters
encoder = nn.Sequential(
    nn.Linear(n_samples, n_theta),
    nn.PReLU(),
    nn.Linear(n_theta, n_theta),
    nn.Sigmoid(),
)
# Make the encoder forward call functional (stateless)
theta_fn = lambda x: encoder(x.squeeze(1))

# Provide a differentiable decoder (synth) that takes as input `n_theta` parameters
decoder = nn.Sequential(
    nn.Linear(n_theta, n_theta),
    nn.PReLU(),
    nn.Linear(n_theta, n_samples),
    nn.Tanh(),
)
# Make the decoder forward call functional (stateless) and ensure it outputs the
# correct shape for the SCRAPLLoss (bs, n_ch, n_samples)
synth_fn = lambda theta: decoder(theta).unsqueeze(1)

# Create a list of dictionaries with batches of input data for `theta_fn`;
# typically this would be gathered from a dataloader
theta_is_batches = [tr.rand((bs, n_ch, n_samples)) for _ in range(n_batches)]
theta_fn_kwargs = [{"x": batch} for batch in theta_is_batches]

# Get the trainable weights of the encoder to pass to the warmup function
params = [p for p in encoder.parameters()]

# Initialize SCRAPLLoss with the minimum required arguments and `n_theta`
scrapl_loss = SCRAPLLoss(
    shape=n_samples,
    J=3,
    Q1=1,
    Q2=1,
    J_fr=2,
    Q_fr=1,
    n_theta=n_theta,
)
# We see that at initialization, all path sampling probabilities are uniform
print(f"Uniform path sampling probability: {scrapl_loss.unif_prob:.6f}")
print(
    f"[min, max] path sampling probabilities (before warmup): "
    f"[{scrapl_loss.probs.min():.6f}, {scrapl_loss.probs.max():.6f}]"
)

# The encoder and decoder (synth) must be deterministic during warmup,
# but can be non-deterministic otherwise
scrapl_loss.check_is_deterministic(theta_fn, theta_fn_kwargs[0], synth_fn)

# Run the warmup. This can be parallelized across paths by specifying different
# `start_path_idx` and `end_path_idx` subsets on multiple devices.
scrapl_loss.warmup_lc_hvp(
    theta_fn=theta_fn,
    synth_fn=synth_fn,
    theta_fn_kwargs=theta_fn_kwargs,
    params=params,
)
# We see that after warmup, the path sampling probabilities are no longer uniform
print(
    f"[min, max] path sampling probabilities (after warmup): "
    f"[{scrapl_loss.probs.min():.6f}, {scrapl_loss.probs.max():.6f}]"
)

# If warmup was conducted in parallel across multiple devices, the path sampling
# probabilities can be loaded from a directory
scrapl_loss.load_probs_from_warmup_dir(warmup_dir="scrapl_warmup")
'''


BLOCKS = [
    ("init", README_INIT),
    ("loss", README_LOSS),
    ("utility", README_UTILITY),
    ("p_adam_saga", README_P_ADAM_SAGA),
    ("warmup", README_WARMUP),
]


def run_block(name: str, code: str, ns: dict[str, Any]) -> None:
    exec(compile(code, f"<README example: {name}>", "exec"), ns)


@pytest.mark.slow  # 20-40 s on 2 CPU cores: a 48000-sample J=12 JTFS step and a 7-path warmup
def test_readme_examples_run_unchanged(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the warmup example writes ./scrapl_warmup
    ns: dict[str, Any] = {"__name__": "readme_example"}
    with torch.random.fork_rng():
        try:
            torch.manual_seed(0)
            _run_and_check(ns, tmp_path, capsys)
        finally:
            torch.set_printoptions(profile="default")  # the warmup example changes it


def _run_and_check(ns: dict[str, Any], tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from scrapl.loss import SCRAPLLoss

    run_block("init", README_INIT, ns)
    loss = ns["scrapl_loss"]
    assert isinstance(loss, SCRAPLLoss) and ns["SCRAPLLoss"] is SCRAPLLoss
    assert loss.n_paths == 315 and loss.unif_prob == pytest.approx(0.0031746, rel=1e-4)

    run_block("loss", README_LOSS, ns)
    out = capsys.readouterr().out
    value = float(re.search(r"SCRAPL loss: (\S+)", out).group(1))
    assert math.isfinite(value) and value > 0
    first_path = loss.curr_path_idx
    assert 0 <= first_path < 315

    run_block("utility", README_UTILITY, ns)
    out = capsys.readouterr().out
    assert "Number of scattering paths: 315" in out
    assert "Uniform path sampling probability: 0.003175" in out
    assert f"Most recently sampled path index (prev. example): {first_path}" in out
    assert "Most recently sampled path index (specific): 8" in out
    assert "Most recently sampled path index (random seed): 211" in out  # the README's value
    counts = defaultdict(int)
    for i in (first_path, 8, 211):
        counts[i] += 1
    assert f"Path sampling statistics (original): {counts}" in out
    assert "Path sampling statistics (cleared): defaultdict(<class 'int'>, {})" in out
    assert f"Path sampling statistics (loaded): {counts}" in out
    assert isinstance(loss.path_counts, defaultdict) and loss.path_counts == counts

    run_block("p_adam_saga", README_P_ADAM_SAGA, ns)
    assert loss.attached_params == []  # detached at the end of the example
    assert loss.scrapl_t == 0  # attach_params (also with []) restarts the step counter, as the reference
    assert sum(loss.path_counts.values()) == 4  # the example's training forward was counted
    assert all(torch.isfinite(p).all() for p in ns["model"].parameters())
    assert ns["loss"].requires_grad and math.isfinite(float(ns["loss"].detach()))

    run_block("warmup", README_WARMUP, ns)
    out = capsys.readouterr().out
    assert "Uniform path sampling probability: 0.142857" in out
    assert "[min, max] path sampling probabilities (before warmup): [0.142857, 0.142857]" in out
    after = re.search(r"\(after warmup\): \[(\S+), (\S+)\]", out)
    lo, hi = float(after.group(1)), float(after.group(2))
    assert lo < 0.142857 < hi  # no longer uniform
    warm = ns["scrapl_loss"]
    assert warm.n_paths == 7 and warm.n_theta == 3
    files = sorted(p.name for p in (tmp_path / "scrapl_warmup").iterdir())
    assert files == ["probs.pt"] + [f"vals_{i}.pt" for i in range(7)] + ["warmup.json"]
    saved = torch.load(tmp_path / "scrapl_warmup" / "probs.pt", weights_only=True)
    torch.testing.assert_close(warm.probs, saved)  # load_probs_from_warmup_dir gave the same probs
    assert float(warm.probs.min()) == pytest.approx(lo, abs=1e-6)
    # The reference package computes the same curvatures and probabilities (its README
    # prints [0.123653, 0.162354]); power iterations start from other random vectors.
    ref = torch.load(FIXTURES / "loss_readme_warmup.pt", weights_only=True)
    vals = torch.stack([torch.load(tmp_path / "scrapl_warmup" / f"vals_{i}.pt", weights_only=True)[0]
                        for i in range(7)]).double()
    torch.testing.assert_close(vals, ref["vals"], rtol=1e-2, atol=0.0)
    torch.testing.assert_close(warm.probs, ref["probs"], rtol=5e-3, atol=0.0)
    assert lo == pytest.approx(0.123653, rel=5e-3) and hi == pytest.approx(0.162354, rel=5e-3)
