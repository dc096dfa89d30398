"""The GPU study's script, run here on the CPU with the tiny model: the embedded model travels
in checked loads, is reassembled, star installs offline, a sweep runs and its reports come
back in one archive (scripts/gpu_study.py)."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "scripts" / "gpu_study.py")


def script(*args, env):
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, env=env,
        timeout=900, cwd=ROOT,
    )  # fmt: skip


def test_loads_reassemble_and_the_study_runs_offline(tmp_path):
    env = {**os.environ, "STAR_GPU_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    done = script("pack", tmp_path / "gpu", "--load-mib", 40, "--no-wheels", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    loads = sorted((tmp_path / "gpu").glob("load*"))
    assert len(loads) == 3  # 98 MB of GGUF and a tokenizer in loads of 40 MiB
    for load in loads:
        assert sum(f.stat().st_size for f in load.rglob("*")) <= 40 * 2**20
    manifest = json.loads((loads[0] / "manifest.json").read_text())
    assert [p["name"] for p in manifest["parts"]] == ["part01", "part02", "part03"]

    # a part that arrives damaged is refused, and nothing is kept of it
    bad = tmp_path / "bad"
    subprocess.run(["cp", "-r", str(loads[1]), str(bad)], check=True)
    part = next(bad.glob("part*"))
    data = bytearray(part.read_bytes())
    data[1000] ^= 1
    part.write_bytes(bytes(data))
    refused = script("receive", bad, env=env)
    assert refused.returncode != 0 and "does not match its checksum" in refused.stderr

    early = script("receive", loads[0], env=env)
    assert early.returncode == 0 and "1 of 3 parts" in early.stdout
    too_soon = script(
        "study", "--configs", "configs/room/trec.yaml", "--strategies", "random",
        "--seeds", "0", "--out", tmp_path / "out", env=env,
    )  # fmt: skip
    assert too_soon.returncode != 0 and "parts part02, part03 not received yet" in too_soon.stderr
    for load in loads[1:]:
        assert script("receive", load, env=env).returncode == 0

    small = "--model tiny-random --schedule 4,8 --pool-size 24 --eval-size 8 --steps 2".split()
    done = script(
        "study", "--configs", "configs/room/trec.yaml", "--strategies", "random,margin",
        "--seeds", "0-1", "--jobs", "2", "--out", tmp_path / "out", *small, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # the tiny model was built from the reassembled package's tokenizer, in the study's cache
    assert (tmp_path / "home" / "cache" / "tiny-random" / "config.json").is_file()
    with tarfile.open(tmp_path / "out" / "study-trec.tar.gz") as tar:
        names = tar.getnames()
    assert "reports/trec/summary.md" in names
    for run in ("random-seed0", "random-seed1", "margin-seed0", "margin-seed1"):
        assert f"runs/trec/{run}/metrics.jsonl" in names
        assert f"runs/trec/{run}/rounds/001/eval.jsonl" in names  # NLL, Brier, per class
    assert not [n for n in names if "/adapter" in n]  # adapters stay on the machine

    # out of time: the sweeps stop, what finished is still reported and archived
    stopped = script(
        "study", "--configs", "configs/room/trec.yaml", "--strategies", "random,margin",
        "--seeds", "0-2", "--minutes", "0", "--out", tmp_path / "late", *small, env=env,
    )  # fmt: skip
    assert stopped.returncode == 3 and "the same command resumes it" in stopped.stdout
    with tarfile.open(tmp_path / "late" / "study-trec.tar.gz") as tar:
        assert "runs/trec/margin-seed1/metrics.jsonl" in tar.getnames()
