"""Ablation studies: a validated spec of arms x seeds, run resumably, summarised with
confidence intervals and plots (``scrapl ablate SPEC --out DIR``).

Example::

    import scrapl.ablation as ab
    result = ab.ablate("configs/ablation_chirplet.yaml", out="ablation_out", workers=2)
    print(result.table())
"""

from __future__ import annotations

from scrapl.ablation.api import SweepResult, ablate
from scrapl.ablation.report import mean_ci, t_quantile_975
from scrapl.ablation.spec import AblationSpec, ArmSpec, Budget, TaskSpec, WarmupSpec, load_spec, spec_hash
from scrapl.ablation.tasks import Task, get_task_class, make_task, register_task, task_names

__all__ = [
    "AblationSpec",
    "ArmSpec",
    "Budget",
    "SweepResult",
    "Task",
    "TaskSpec",
    "WarmupSpec",
    "ablate",
    "get_task_class",
    "load_spec",
    "make_task",
    "mean_ci",
    "register_task",
    "spec_hash",
    "t_quantile_975",
    "task_names",
]
