"""`star sweep` runs every pair and resumes; `star report` tables match the runs' metrics and
predictions, recomputed here independently; ablations get their own line; AULC and the paired
interval on hand-made numbers."""

import csv
import json
import math
import re
import statistics
from pathlib import Path

import pytest
import yaml
from conftest import flags

from star import config as cfg
from star.cli import main
from star.experiment.report import (
    RunResult,
    by_variant,
    find_runs,
    paired_table,
    reach_table,
    read_runs_csv,
)
from star.experiment.statistics import (
    detectable_difference,
    labels_to_reach,
    paired_interval,
    pooled_interval,
)

SWEEP = flags(
    task="obqa",
    model="tiny-random",
    init_size=4,
    query_size=4,
    rounds=2,
    pool_size=24,
    eval_size=8,
    lora_r=4,
    epochs=1,
    batch_size=4,
    seeds="0,1",
)


def test_aulc_is_the_mean_accuracy_along_the_curve():
    run = RunResult(Path("."), "pe", 0, [10, 20, 40], [0.2, 0.4, 0.4], [0, 0, 0])
    assert run.aulc() == pytest.approx((10 * 0.3 + 20 * 0.4) / 30)
    assert RunResult(Path("."), "pe", 0, [8], [0.5], [0]).aulc() == 0.5
    assert run.aulc(rounds=2) == pytest.approx(0.3)  # a table cut to the rounds all runs have


def test_aulc_over_log_labels_weighs_every_doubling_the_same():
    # 10 -> 20 -> 40: two doublings, each one unit of log2; (0.3 + 0.4) / 2
    run = RunResult(Path("."), "pe", 0, [10, 20, 40], [0.2, 0.4, 0.4], [0, 0, 0], log_axis=True)
    assert run.aulc() == pytest.approx(0.35)


def test_detectable_difference_is_z_sum_times_the_standard_error():
    # sd of (0.1, 0.3) is 0.1·√2, so sd/√2 = 0.1; z₀.₉₇₅ + z₀.₈ = 1.959964 + 0.841621
    assert detectable_difference([0.1, 0.3]) == pytest.approx(0.2801585, abs=1e-6)
    # four seeds: sd of (0.1, 0.3, 0.1, 0.3) is √(0.04 / 3), the standard error that over √4
    assert detectable_difference([0.1, 0.3, 0.1, 0.3]) == pytest.approx(
        2.801585 * (0.04 / 3) ** 0.5 / 2, abs=1e-6
    )
    assert detectable_difference([0.05]) is None


def test_paired_interval_brackets_the_mean_and_is_a_point_for_one_seed():
    lo, hi = paired_interval([0.1, 0.2, 0.3])
    assert 0.1 <= lo <= 0.2 <= hi <= 0.3
    assert paired_interval([0.05]) == (0.05, 0.05)


def test_pooled_interval_weighs_each_group_the_same_and_resamples_within_it():
    # group means: {0, 0.1, 0.2} from [0, 0.2] (a quarter each at the ends), 1.0 from [1.0]; the
    # pooled mean is their average, so 0.5 and 0.6 are the 2.5 % and 97.5 % points.
    assert pooled_interval([[0.0, 0.2], [1.0]]) == pytest.approx((0.5, 0.6))
    assert pooled_interval([[0.1, 0.2, 0.3]]) == paired_interval([0.1, 0.2, 0.3])


def test_labels_to_reach_interpolates_on_the_curve():
    assert labels_to_reach([16, 32, 64], [0.2, 0.4, 0.6], 0.5) == pytest.approx(48.0)
    assert labels_to_reach([16, 32, 64], [0.5, 0.4, 0.6], 0.3) == 16.0  # there from the start
    assert labels_to_reach([16, 32, 64], [0.2, 0.3, 0.35], 0.4) is None


def test_reach_table_is_a_share_of_randoms_labels():
    """Random ends at 0.4 and 0.6 (mean 0.5); the mean curve of the other reaches 0.5 halfway
    between 16 and 32 labels: 24 labels, 38 % of random's 64; both seeds get there."""
    runs = {
        "random": [
            RunResult(Path("r0"), "random", 0, [16, 32, 64], [0.2, 0.3, 0.4], [0] * 3),
            RunResult(Path("r1"), "random", 1, [16, 32, 64], [0.2, 0.3, 0.6], [0] * 3),
        ],
        "typical": [
            RunResult(Path("t0"), "typical", 0, [16, 32, 64], [0.4, 0.6, 0.7], [0] * 3),
            RunResult(Path("t1"), "typical", 1, [16, 32, 64], [0.4, 0.6, 0.7], [0] * 3),
        ],
    }
    row = reach_table(runs).splitlines()[-1]
    assert row == "| typical | 2 | 0.500 (64) | 24.0 | 38% | 2 of 2 |"


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    assert main(["sweep", *SWEEP, "--strategies", "random", "--out", str(root / "a")]) == 0
    assert (
        main(["sweep", *SWEEP, "--strategies", "pe", "--out", str(root / "b"), "--jobs", "2"]) == 0
    )
    ablation = ["--strategies", "pe", "--b-decay", "0.5", "--seeds", "0", "--out", str(root / "c")]
    assert main(["sweep", *SWEEP, *ablation]) == 0
    return root


def test_a_finished_sweep_reruns_nothing(sweeps, capsys):
    before = {p: p.stat().st_mtime_ns for p in sweeps.rglob("metrics.jsonl")}
    assert main(["sweep", *SWEEP, "--strategies", "random", "--out", str(sweeps / "a")]) == 0
    assert {p: p.stat().st_mtime_ns for p in sweeps.rglob("metrics.jsonl")} == before


def test_report_tables_match_the_metrics(sweeps, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(sweeps / "a"), str(sweeps / "b"), "--out", str(out)]) == 0
    curves = ["learning_curves", "ece_curves", "nll_curves", "brier_curves"]
    for stem in [*curves, "reliability_random", "reliability_pe"]:
        for suffix in (".png", ".svg"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    table = list(csv.DictReader((out / "runs.csv").open()))
    assert len(table) == 8  # 2 strategies × 2 seeds × 2 rounds
    for strategy in ("random", "pe"):
        runs = [
            p.parent
            for p in sorted(sweeps.glob("[ab]/*/metrics.jsonl"))
            if f"strategy: {strategy}\n" in (p.parent / "config.yaml").read_text()
        ]
        metrics = [
            [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in runs
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
        for section, score in (("NLL", _nll), ("Brier", _brier)):
            row = next(
                line for line in _section(summary, section) if line.startswith(f"| {strategy} |")
            )
            cells = re.findall(r"(-?\d+\.\d{3}) ± (\d+\.\d{3})", row)
            for k in range(2):
                values = [score(_eval_rows(r, k)) for r in runs]
                in_csv = [
                    float(row[section.lower()])
                    for row in table
                    if row["strategy"] == strategy and row["round"] == str(k)
                ]
                assert in_csv == pytest.approx(values, abs=1e-6)
                assert float(cells[k][0]) == pytest.approx(statistics.mean(values), abs=6e-4)
                assert float(cells[k][1]) == pytest.approx(statistics.stdev(values), abs=6e-4)
    assert re.search(r"\| pe \| 2 \| [+-]\d\.\d{3} \[", summary)  # paired with random's seeds


def test_a_setting_that_differs_within_a_strategy_is_its_own_line(sweeps, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(sweeps), "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "| pe (b_decay=0.0) | 2 |" in summary and "| pe (b_decay=0.5) | 1 |" in summary
    assert re.search(r"\| pe \(b_decay=0\.5\) \| 1 \| [+-]\d\.\d{3} \[one seed\] \| — \|", summary)
    assert (out / "reliability_pe_b_decay-0.5.png").stat().st_size > 1000


def test_runs_csv_reads_back_as_the_groups_it_was_written_from(sweeps, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(sweeps), "--out", str(out), "--aulc-axis", "log-labels"]) == 0
    groups = by_variant(find_runs([sweeps], log_axis=True))
    back = read_runs_csv(out / "runs.csv", log_axis=True)
    assert sorted(back) == sorted(groups)
    for label, runs in groups.items():
        got = sorted(back[label], key=lambda r: r.seed)
        for r, b in zip(sorted(runs, key=lambda r: r.seed), got, strict=True):
            assert (b.seed, b.n_labeled, str(b.path)) == (r.seed, r.n_labeled, str(r.path))
            for m in ("accuracy", "ece", "nll", "brier"):
                assert getattr(b, m) == pytest.approx(getattr(r, m), abs=1e-6)
            assert b.aulc() == pytest.approx(r.aulc(), abs=1e-6)
    assert paired_table(back) == paired_table(groups)  # the tables recompute from the csv


def test_report_of_the_first_round_only(sweeps, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(sweeps / "a"), "--rounds", "1", "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "round 0 (n=4)" in summary and "round 1" not in summary
    assert main(["report", str(sweeps / "a"), "--rounds", "0", "--out", str(out)]) == 2


def _section(summary: str, title: str) -> list[str]:
    lines = summary.splitlines()
    start = lines.index(f"### {title}")
    return lines[
        start + 1 : next(i for i in range(start + 1, len(lines)) if lines[i].startswith("#"))
    ]


def _eval_rows(run: Path, k: int) -> list[dict]:
    return [
        json.loads(x) for x in (run / "rounds" / f"{k:03d}" / "eval.jsonl").read_text().splitlines()
    ]


def _nll(rows: list[dict]) -> float:
    total = 0.0
    for row in rows:
        c = min(max(row["confidence"], 1e-6), 1 - 1e-6)
        total -= math.log(c if row["correct"] else 1 - c)
    return total / len(rows)


def _brier(rows: list[dict]) -> float:
    return sum((row["confidence"] - row["correct"]) ** 2 for row in rows) / len(rows)


def test_report_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "no finished rounds" in capsys.readouterr().err


def test_runs_of_different_tasks_are_named_by_task_not_by_what_the_task_sets():
    from pathlib import Path

    from star.experiment.report import RunResult, by_variant

    def run(task, template, lr):
        settings = {"task": task, "data.template": template, "data.labels": ["a"], "train.lr": lr}
        return RunResult(Path(task), "random", 0, [8], [0.5], [0.1], settings=settings)

    groups = by_variant([run("trec", "{prompt}\nType:", 0.1), run("sst2", "Review: {prompt}", 0.2)])
    assert sorted(groups) == ["random (task=sst2, lr=0.2)", "random (task=trec, lr=0.1)"]
    long = by_variant([run("t", "x" * 60, 0.1), run("t", "{prompt}\n" + "y" * 10, 0.1)])
    assert sorted(long) == [
        "random (template=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…)",
        "random (template={prompt} yyyyyyyyyy)",
    ]


def test_a_run_from_before_an_option_existed_pairs_with_runs_that_record_its_default(tmp_path):
    """An older config.yaml lacks model.attention: it ran with what is now the default, so it
    is not a variant of its own."""
    for name, drop in (("old", True), ("new", False)):
        tree = cfg.RunConfig().to_dict() | {"strategy": "random", "seed": 0 if drop else 1}
        if drop:
            del tree["model"]["attention"]
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump(tree))
        row = {"round": 0, "n_labeled": 8, "accuracy": 0.5, "ece": 0.1}
        (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    assert list(by_variant(find_runs([tmp_path], None, False))) == ["random"]
