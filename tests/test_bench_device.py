"""`make bench-device` on the CPU: the GPU check's own code on a tiny shape, so it cannot rot
between the rare runs on a GPU; every figure the GPU run reports is printed here too."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_device_benchmark_prints_every_figure():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "device.py"), "--shapes", "tiny"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert re.search(r"^device: CPU; float32 matmul ceiling [\d.]+ TFLOP/s", out, re.M)
    number = r"[\d,]+"
    for figure in (
        rf"training: {number} tokens/s, MFU [\d.]+ \(32 rows, batch 8\); peak resident",
        rf"scoring: {number} tokens/s, MFU [\d.]+",
        rf"option evaluation: {number} tokens/s, MFU [\d.]+",
        rf"generation: {number} new tokens/s",
        r"round \(train 32, score 96 prompts, select 16\): [\d.]+ s \(base pass [\d.]+ s, "
        r"train [\d.]+ s, 3 MC passes [\d.]+ s, select [\d.]+ s\)",
        r"estimate: training step [\d.]+ GiB, inference [\d.]+ GiB",
        r"memory, one step of 8 × \d+ tokens, gradient checkpointing off: peak resident",
        r"memory, one step of 8 × \d+ tokens, gradient checkpointing on: peak resident",
    ):
        assert re.search(rf"^\[tiny float32\] .*{figure}", out, re.M), figure
    assert "4-bit QLoRA: not measured here" in out
