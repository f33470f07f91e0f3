"""Path samplers: ``uniform`` and ``theta_is`` (theta-importance sampling).

Plugins (kind ``"sampler"``), built by ``factory(config, *, n_paths, generator)``:

============  ================================================================
``uniform``   every path with probability ``1/P`` (unbiased)
``theta_is``  probabilities from the curvature warmup (:func:`run_warmup`)
============  ================================================================

The warmup machinery (:mod:`~scrapl.samplers.curvature`,
:mod:`~scrapl.samplers.warmup`) needs from the loss only a per-path distance
``dist_fn(x, x_hat, path_idx) -> scalar``.
"""

from __future__ import annotations

from scrapl.hookspecs import plugins_hook
from scrapl.interfaces import PluginSpec
from scrapl.samplers.base import PROBS_SUM_TOL, ProbabilitySampler, validate_probs
from scrapl.samplers.curvature import CurvatureEstimator, check_is_deterministic, largest_eigenvalues, path_curvatures
from scrapl.samplers.files import (
    InvalidWarmupFileError,
    load_probs_file,
    load_vals_file,
    load_warmup_dir,
    probs_file,
    save_probs_file,
    vals_file,
)
from scrapl.samplers.probs import aggregate_vals, probs_from_curvatures
from scrapl.samplers.theta_is import ThetaISSampler, ThetaISSamplerConfig, make_theta_is, make_theta_is_sampler
from scrapl.samplers.uniform import UniformSampler, UniformSamplerConfig, make_uniform, make_uniform_sampler
from scrapl.samplers.warmup import merge_warmup_dir, run_warmup, shard_paths

__all__ = [
    "PLUGINS", "scrapl_register_plugins",
    "PROBS_SUM_TOL",
    "ProbabilitySampler",
    "UniformSampler",
    "UniformSamplerConfig",
    "ThetaISSampler",
    "ThetaISSamplerConfig",
    "InvalidWarmupFileError",
    "CurvatureEstimator",
    "aggregate_vals",
    "check_is_deterministic",
    "largest_eigenvalues",
    "load_probs_file",
    "load_vals_file",
    "load_warmup_dir",
    "make_theta_is",
    "make_theta_is_sampler",
    "make_uniform",
    "make_uniform_sampler",
    "merge_warmup_dir",
    "path_curvatures",
    "probs_file",
    "probs_from_curvatures",
    "run_warmup",
    "save_probs_file",
    "shard_paths",
    "validate_probs",
    "vals_file",
]

PLUGINS: list[PluginSpec] = [
    PluginSpec.of("sampler", UniformSamplerConfig, make_uniform, "uniform path sampling (unbiased SCRAPL estimator)"),
    PluginSpec.of("sampler", ThetaISSamplerConfig, make_theta_is,
                  "theta-importance sampling from the curvature warmup"),
]

scrapl_register_plugins = plugins_hook(PLUGINS)  # registered like any third-party plugin
