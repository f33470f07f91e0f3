"""The YAML configs shipped in configs/ load and build (paths counted as the paper says)."""

from __future__ import annotations

from pathlib import Path

import pytest

import scrapl
from scrapl.builder import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name, n_paths", [("paper_chirplet.yaml", 315), ("paper_tr808.yaml", 483)])
def test_paper_configs_build_with_the_papers_path_counts(name: str, n_paths: int) -> None:
    built = scrapl.build(CONFIGS / name)
    assert built.transform.n_paths == n_paths
    assert built.loss.n_paths == n_paths


def test_demo_config_matches_the_demo_default() -> None:
    from scrapl.demo.settings import DEFAULT_SCRAPL_CONFIG

    assert load_config(CONFIGS / "demo.yaml") == load_config(DEFAULT_SCRAPL_CONFIG)
