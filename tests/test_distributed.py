"""`torchrun --nproc_per_node 2 -m star run` (gloo on CPU) makes the single-process run's choices:
the same labelled ids, scores gathered from the two ranks equal to one process's to 1e-4, the
same evaluation outputs, and only one process writes the run directory.

LoRA dropout is 0 so that training is the same arithmetic in both (with dropout, each process
draws its own masks); batches of 3 split 2 + 1, and a last batch of 1 leaves a rank empty.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import flags

from star.cli import main

RUN = ["run"] + flags(
    task="obqa",
    model="tiny-random",
    strategy="pe-dynamic",
    init_size=4,
    query_size=4,
    rounds=3,
    pool_size=24,
    eval_size=10,
    lora_r=4,
    lora_dropout=0,
    epochs=1,
    batch_size=3,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    os.environ["STAR_SIGNAL_CACHE"] = str(root / "one-signals")
    try:
        assert main([*RUN, "--out", str(root / "one"), "-q"]) == 0
    finally:
        del os.environ["STAR_SIGNAL_CACHE"]
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STAR_SIGNAL_CACHE": str(root / "two-signals")}
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "star", *RUN, "--out", str(root / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "one", root / "two", done.stdout


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_processes_label_the_same_examples(runs):
    one, two, _ = runs
    assert _rows(one / "labeled.jsonl") == _rows(two / "labeled.jsonl")
    for k in (0, 1):
        a, b = (_rows(r / "rounds" / f"{k:03d}" / "selected.jsonl") for r in (one, two))
        assert [x["id"] for x in a] == [x["id"] for x in b]
        assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-4)


def _cached(root: Path) -> dict[str, dict]:
    from star.engine.cache import SignalCache

    (space,) = [p.name for p in root.iterdir()]
    return SignalCache(root, space).rows()


def test_gathered_pool_scores_equal_one_process(runs):
    one, two, _ = runs
    a, b = (_cached(r.parent / f"{r.name}-signals") for r in (one, two))
    assert sorted(a) == sorted(b) and len(a) == 20  # one writer; every candidate once
    for key in ("pe", "token_entropy"):
        assert [float(a[k][key]) for k in sorted(a)] == pytest.approx(
            [float(b[k][key]) for k in sorted(a)], abs=1e-4
        )


def test_evaluation_and_training_match(runs):
    one, two, _ = runs
    for k in range(3):
        a, b = (_rows(r / "rounds" / f"{k:03d}" / "eval.jsonl") for r in (one, two))
        assert [(x["id"], x["output"]) for x in a] == [(x["id"], x["output"]) for x in b]
        assert [x["confidence"] for x in a] == pytest.approx([x["confidence"] for x in b], abs=1e-4)
    for a, b in zip(_rows(one / "metrics.jsonl"), _rows(two / "metrics.jsonl"), strict=True):
        assert a["accuracy"] == b["accuracy"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)


def test_one_process_reports(runs):
    _, _, stdout = runs
    assert stdout.count("(2 processes)") == 1
    assert len([line for line in stdout.splitlines() if line.strip().startswith("2 ")]) == 1
