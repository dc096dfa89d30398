"""SIGKILL a real `star run` process during training, scoring and the write of new labels;
after a restart nothing is lost or duplicated and the selections equal an uninterrupted run's."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import flags

ARGS = flags(
    task="obqa",
    strategy="star",
    model="tiny-random",
    init_size=6,
    query_size=6,
    rounds=3,
    pool_size=40,
    eval_size=8,
    lora_r=4,
    epochs=1,
    batch_size=4,
    batch_tokens=256,
) + ["-q"]


def star_run(out: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "star", "run", "--out", str(out), *ARGS],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(out: Path) -> dict:
    """What a run decided: labels with their rounds, selections per round, round count."""
    labeled = [json.loads(x) for x in (out / "labeled.jsonl").read_text().splitlines()]
    selected = {
        p.parent.name: [json.loads(x)["id"] for x in p.read_text().splitlines()]
        for p in sorted((out / "rounds").glob("*/selected.jsonl"))
    }
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"labeled": labeled, "selected": selected, "rounds": [m["round"] for m in metrics]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert star_run(out).wait(timeout=600) == 0
    return finished(out)


@pytest.mark.parametrize(
    "point",
    [
        "train step:4",  # round 1's training (round 0 has 2 steps)
        "score batch:9",  # the run's 9th scoring batch (base or tuned pass)
        "write labeled.jsonl:2",  # round 0's picks on disk in a temp file, not yet in place
    ],
)
def test_sigkill_then_restart_equals_an_uninterrupted_run(reference, tmp_path, point):
    out, flag = tmp_path / "run", tmp_path / "flag"
    proc = star_run(out, {"STAR_CRASH_AT": point, "STAR_CRASH_FLAG": str(flag)})
    deadline = time.time() + 600
    while not flag.exists():
        assert proc.poll() is None, f"the run ended before {point}: {proc.stderr.read()}"
        assert time.time() < deadline
        time.sleep(0.2)
    before = (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").exists() else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = (out / "metrics.jsonl").read_text() if (out / "metrics.jsonl").exists() else ""
    assert after == before  # finished rounds intact
    labels = [json.loads(x)["id"] for x in (out / "labeled.jsonl").read_text().splitlines()]
    assert len(labels) == len(set(labels))  # nothing duplicated, even mid-round
    assert star_run(out).wait(timeout=600) == 0
    assert finished(out) == reference
