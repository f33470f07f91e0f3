"""The output folder of a sweep: the spec it belongs to and one file per finished run.

Layout::

    DIR/spec.json            the validated spec and its hash (written first)
    DIR/runs/<arm>__seed<S>.json   one finished run each (written atomically)
    DIR/runs.csv, summary.json, summary.md, *.png   the report (rewritten at the end)

A run file appears only once its run has finished (written to a temporary name,
then renamed), so a killed sweep loses only the runs in flight, and a rerun skips
every run whose file exists.  A folder whose ``spec.json`` holds another hash is
refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scrapl.ablation.spec import AblationSpec, spec_hash
from scrapl.atomic import atomic_write

__all__ = ["RunStore"]


def _atomic_write(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class RunStore:
    """The output folder ``root`` of ``spec``.

    Raises:
        ValueError: ``root`` exists and is not a folder, is not empty and holds no
            ``spec.json``, or holds the results of another spec.
    """

    def __init__(self, root: str | os.PathLike, spec: AblationSpec) -> None:
        self.root = Path(root)
        self.spec = spec
        self.hash = spec_hash(spec)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"output path {str(self.root)!r} exists and is not a folder")
        meta = self.root / "spec.json"
        if meta.is_file():
            try:
                old = json.loads(meta.read_text(encoding="utf-8")).get("hash")
            except (OSError, ValueError) as exc:
                raise ValueError(f"output folder {str(self.root)!r} has an unreadable spec.json: {exc}") from None
            if old != self.hash:
                raise ValueError(
                    f"output folder {str(self.root)!r} holds results of another spec (hash {old}, this spec {self.hash});"
                    " choose another --out or delete the folder"
                )
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise ValueError(f"output folder {str(self.root)!r} is not empty and was not made by scrapl ablate")

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def prepare(self) -> None:
        """Create the folder and write ``spec.json`` (once)."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        meta = self.root / "spec.json"
        if not meta.is_file():
            data = {"hash": self.hash, "spec": self.spec.model_dump(mode="json")}
            _atomic_write(meta, json.dumps(data, indent=2) + "\n")

    def path(self, arm: str, seed: int) -> Path:
        return self.runs_dir / f"{arm}__seed{seed}.json"

    def done(self, arm: str, seed: int) -> bool:
        return self.path(arm, seed).is_file()

    def save(self, record: dict[str, Any]) -> Path:
        """Write one finished run atomically."""
        p = self.path(record["arm"], record["seed"])
        _atomic_write(p, json.dumps(record) + "\n")
        return p

    def load(self, arm: str, seed: int) -> dict[str, Any]:
        return json.loads(self.path(arm, seed).read_text(encoding="utf-8"))

    def write_text(self, name: str, text: str) -> Path:
        p = self.root / name
        _atomic_write(p, text)
        return p
