"""scripts/default_rule.py: issue 28's rule read off committed reports, with hand-made runs.csv
files whose outcomes are known exactly."""

import csv
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "default_rule.py"


def report(path: Path, curves: dict[str, tuple[list[float], int]]) -> str:
    """A report directory whose runs.csv holds, per strategy, `seeds` runs at 32 and 64 labels:
    the curve plus 0.01 on even seeds and minus 0.01 on odd ones (mean: the curve)."""
    path.mkdir()
    with (path / "runs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["strategy", "seed", "round", "n_labeled", "accuracy", "ece", "nll", "brier", "run"]
        )
        for name, (curve, seeds) in curves.items():
            for seed in range(seeds):
                jitter = 0.0 if name == "random" else (0.01 if seed % 2 == 0 else -0.01)
                for k, (n, acc) in enumerate(zip((32, 64), curve, strict=True)):
                    w.writerow(
                        [name, seed, k, n, acc + jitter, 0.1, 0.5, 0.2, f"runs/{name}-{seed}"]
                    )
    return str(path)


def rule(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_a_strategy_that_wins_three_and_loses_none_becomes_the_default(tmp_path):
    random, good = ([0.50, 0.60], 10), ([0.55, 0.65], 10)
    reports = [
        f"a={report(tmp_path / 'a', {'random': random, 'good': good, 'few': ([0.9, 0.9], 3)})}",
        f"b={report(tmp_path / 'b', {'random': random, 'good': good, 'bad': ([0.45, 0.55], 10)})}",
        f"c={report(tmp_path / 'c', {'random': random, 'good': good, 'bad': ([0.55, 0.65], 10)})}",
    ]
    done = rule(*reports)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # good: AULC (mean of the two rounds) +0.04 or +0.06 per seed; reaches 0.60 at 48 labels
    assert "| a | good | 10 | +0.050 [+0.044, +0.056] | ±0.009 | 75% | win |" in lines
    assert "| a | few | 3 | +0.353 [+0.340, +0.360] | ±0.019 | 50% | too few seeds |" in lines
    assert "| b | bad | 10 | -0.050 [-0.056, -0.044] | ±0.009 | not reached | loss |" in lines
    assert (
        "- good: 3 won, 0 lost, 0 tied, 0 with too few seeds; reaches random's final accuracy "
        "with <= 75% of its labels on 3: the rule's default and the goal met"
    ) in lines
    assert lines[-1] == "default for closed-label tasks: good"
    assert "- bad: 1 won, 1 lost, 0 tied, 0 with too few seeds" in done.stdout  # a loss: no
    # two benchmarks won are not three: random stays
    done = rule(*reports[:2])
    assert done.stdout.splitlines()[-1] == "default for closed-label tasks: random"
    # the screen's seeds decide nothing
    done = rule(*reports, "--min-seeds", "11")
    assert done.stdout.splitlines()[-1] == "default for closed-label tasks: random"


def test_a_report_without_random_or_runs_is_one_line(tmp_path):
    done = rule(f"a={report(tmp_path / 'a', {'good': ([0.5, 0.6], 2)})}")
    assert done.returncode != 0 and done.stderr.strip().endswith(
        "No `random` runs: no paired comparison."
    )
    done = rule(f"a={tmp_path / 'missing'}")
    assert (
        done.returncode == 2
        and "expected BENCHMARK=REPORT, REPORT holding a runs.csv" in done.stderr
    )
