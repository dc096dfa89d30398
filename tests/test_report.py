"""`star sweep` runs every pair and resumes; `star report` tables match the runs' metrics,
recomputed here independently; AULC and the paired interval on hand-made numbers."""

import json
import re
import statistics
from pathlib import Path

import pytest

from star.cli import main
from star.report import RunResult, paired_interval

SWEEP = [
    "--task",
    "obqa",
    "--model",
    "tiny-random",
    "--init-size",
    "4",
    "--query-size",
    "4",
    "--rounds",
    "2",
    "--pool-size",
    "24",
    "--eval-size",
    "8",
    "--lora-r",
    "4",
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--seeds",
    "0,1",
]


def test_aulc_is_the_mean_accuracy_along_the_curve():
    run = RunResult(Path("."), "pe", 0, [10, 20, 40], [0.2, 0.4, 0.4], [0, 0, 0])
    assert run.aulc() == pytest.approx((10 * 0.3 + 20 * 0.4) / 30)
    assert RunResult(Path("."), "pe", 0, [8], [0.5], [0]).aulc() == 0.5


def test_paired_interval_brackets_the_mean_and_is_a_point_for_one_seed():
    lo, hi = paired_interval([0.1, 0.2, 0.3])
    assert 0.1 <= lo <= 0.2 <= hi <= 0.3
    assert paired_interval([0.05]) == (0.05, 0.05)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    assert main(["sweep", *SWEEP, "--strategies", "random", "--out", str(root / "a")]) == 0
    assert (
        main(["sweep", *SWEEP, "--strategies", "pe", "--out", str(root / "b"), "--jobs", "2"]) == 0
    )
    return root


def test_a_finished_sweep_reruns_nothing(sweeps, capsys):
    before = {p: p.stat().st_mtime_ns for p in sweeps.rglob("metrics.jsonl")}
    assert main(["sweep", *SWEEP, "--strategies", "random", "--out", str(sweeps / "a")]) == 0
    assert {p: p.stat().st_mtime_ns for p in sweeps.rglob("metrics.jsonl")} == before


def test_report_tables_match_the_metrics(sweeps, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(sweeps / "a"), str(sweeps / "b"), "--out", str(out)]) == 0
    for stem in ("learning_curves", "ece_curves", "reliability_random", "reliability_pe"):
        for suffix in (".png", ".svg"):
            assert (out / stem).with_suffix(suffix).stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    for strategy in ("random", "pe"):
        metrics = [
            [json.loads(x) for x in p.read_text().splitlines()]
            for p in sorted(sweeps.rglob("metrics.jsonl"))
            if f"strategy: {strategy}\n" in (p.parent / "config.yaml").read_text()
        ]
        assert len(metrics) == 2
        row = next(line for line in summary.splitlines() if line.startswith(f"| {strategy} | 2 |"))
        cells = re.findall(r"(-?\d\.\d{3}) ± (\d\.\d{3})", row)
        for k in range(2):
            acc = [m[k]["accuracy"] for m in metrics]
            assert float(cells[k][0]) == pytest.approx(statistics.mean(acc), abs=6e-4)
            assert float(cells[k][1]) == pytest.approx(statistics.stdev(acc), abs=6e-4)
        ece = [m[1]["ece"] for m in metrics]
        assert float(cells[3][0]) == pytest.approx(statistics.mean(ece), abs=6e-4)
    assert re.search(r"\| pe \| 2 \| [+-]\d\.\d{3} \[", summary)  # paired with random's seeds


def test_report_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "no finished rounds" in capsys.readouterr().err
