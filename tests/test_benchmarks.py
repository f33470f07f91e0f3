"""The pure helpers of the benchmark scripts (their timings are never tested)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_matrix  # noqa: E402
import bench_overhead  # noqa: E402

from scrapl.transforms.jtfs import JTFS  # noqa: E402


@pytest.mark.parametrize("n, m, floats", [(1024, 1, 1 << 20), (65536, 40, 1 << 20), (4096, 1000, 1 << 16), (7, 3, 1)])
def test_chunk_rows_cover_the_batch_in_cache_sized_pieces(n: int, m: int, floats: int) -> None:
    pieces = bench_matrix.chunk_rows(n, m, floats)
    assert sum(pieces) == m and all(p >= 1 for p in pieces)
    assert all(2 * n * p <= floats for p in pieces) or pieces == [1] * m


def test_time_floor_is_the_floor_without_the_frequential_ffts() -> None:
    jtfs = JTFS(shape=4096, J=6, Q1=8, Q2=1, J_fr=2, Q_fr=1)
    for i in (0, jtfs.n_paths - 1):
        full = bench_matrix.fft_list(jtfs, i, 2)
        time_only = bench_matrix.fft_list(jtfs, i, 2, frequential=False)
        n2, _ = jtfs._paths[i]
        T2 = jtfs._second[n2].T2
        # 3 passes (input, target, input's adjoints) of 2 frequential FFTs each
        assert len(full) - len(time_only) == 6
        assert all(op in full for op in time_only)
        assert [op for op in full if op not in time_only] and all(
            m == 2 * T2 for _, _, m in (op for op in full if op not in time_only))
        assert full[0] == ("r2c", jtfs.N_pad, 2) and full[-1] == ("c2r", jtfs.N_pad, 2)


def test_overhead_fit_recovers_an_affine_cost() -> None:
    a, b = bench_overhead._fit((1, 2, 3, 4), [0.004 + 0.0007 * k for k in (1, 2, 3, 4)])
    assert a == pytest.approx(0.004) and b == pytest.approx(0.0007)


def test_round_summary_takes_median_and_range_of_each_ratio_per_cell() -> None:
    def cell(name: str, batch: int, rnd: int, s_mss: float, ref: float | None) -> dict:
        wall = {"scrapl_over_mss_expected": s_mss, "scrapl_over_mss_median": s_mss / 2}
        if ref is not None:
            wall["ref_over_scrapl_expected"] = ref
        return {"config": name, "batch": batch, "round": rnd, "wall": wall}

    cells = [cell("paper", 1, 0, 1.2, 9.0), cell("demo", 4, 0, 0.7, None), cell("paper", 1, 1, 0.8, 11.0),
             cell("demo", 4, 1, 0.9, None), cell("paper", 1, 2, 1.0, None)]
    rows = bench_matrix.round_summary(cells, "wall")
    assert [(r["config"], r["batch"]) for r in rows] == [("paper", 1), ("demo", 4)]
    assert rows[0]["S/MSS exp"] == {"median": pytest.approx(1.0), "min": 0.8, "max": 1.2, "n": 3}
    assert rows[0]["S/MSS med"]["median"] == pytest.approx(0.5)
    assert rows[0]["ref/S exp"] == {"median": pytest.approx(10.0), "min": 9.0, "max": 11.0, "n": 2}
    assert "ref/S exp" not in rows[1] and rows[1]["S/MSS exp"]["n"] == 2
    assert "S/floor exp" not in rows[0]
    text = bench_matrix._fmt_rounds(cells, "wall")
    assert "1.00 (0.80-1.20)" in text and "3 rounds" in text
