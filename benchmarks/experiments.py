"""How much cheaper a sweep and a `star next` are with star's savings (docs/performance.md).

One fixed small sweep on the embedded model (trec, strategies random, pe and star, 2 seeds,
3 rounds) runs three times, each from an empty signal cache:
  1. off:    every saving off: one run at a time on every core (the old `--jobs 1`), no
             signal cache, no merged passes, every round trained by its own run;
  2. exact:  the exact savings: one single-thread run per core, costliest first, the signal
             cache, merged passes where they pay, a round trained once where runs share it
             (random's and pe's round 0); every run must select exactly the ids and
             report exactly the accuracies of (1);
  3. approx: (2) plus the approximations: two-stage MC and candidate subsampling.
Then a labelling project on BANKING77's 9,999 training texts, after one trained round:
the wall time of `star next --k 100` with `random` and with `star` (approximations on).

Prints `sweep_speedup_exact`, `sweep_speedup_approx`, `approx_selection_overlap`,
`approx_aulc_delta`, `next_seconds_10k`, and what a Monte-Carlo pass costs against a
deterministic one. ~45 minutes on a 2-core CPU; a finished part is reused when rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from star.experiment.report import find_runs

ROOT = Path(__file__).resolve().parents[1]
SWEEP = [
    "--strategies", "random,pe,star",
    "--seeds", "0,1",
    "--task", "trec",
    "--pool-size", "300",
    "--eval-size", "48",
    "--schedule", "12,24,36",
    "--lora-r", "16",
    "--lora-alpha", "16",
    "--lr", "5e-4",
    "--warmup", "0.1",
    "--epochs", "2",
    "--batch-size", "4",
]  # fmt: skip
OFF = [
    "--jobs",
    "1",
    "--signal-cache",
    "false",
    "--merge-lora",
    "false",
    "--reuse-training",
    "false",
]
APPROX = ["--mc-top", "30", "--max-candidates", "100"]
MC_ONLY = ["--mc-top", "30", "--strategies", "star"]


SMOKE = [  # --smoke: the same steps on the tiny random model, to check the script in a minute
    "--model", "tiny-random", "--pool-size", "40", "--eval-size", "8", "--schedule", "4,8,12",
]  # fmt: skip


def star(*args: str, env: dict | None = None) -> float:
    """Run `star ARGS`; returns its wall time in seconds (exits on failure)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "star", *args], env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"star {' '.join(args)} failed with exit {done.returncode}")
    return time.perf_counter() - start


def timed_sweep(out: Path, extra: list[str], signals: Path, smoke: bool) -> float:
    """A fresh sweep (a finished one is reused: the script resumes) and its wall time."""
    stamp = out / "wall_seconds.json"
    if stamp.exists():
        return json.loads(stamp.read_text())["seconds"]
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(signals, ignore_errors=True)
    env = {**os.environ, "STAR_SIGNAL_CACHE": str(signals)}
    seconds = star("sweep", *SWEEP, *extra, *(SMOKE if smoke else []), "--out", str(out), env=env)
    stamp.write_text(json.dumps({"seconds": seconds}))
    return seconds


def selections(run: Path) -> list[list[str]]:
    rounds = sorted((run / "rounds").iterdir())
    return [
        [json.loads(line)["id"] for line in (r / "selected.jsonl").read_text().splitlines()]
        for r in rounds
        if (r / "selected.jsonl").exists()
    ]


def by_pair(root: Path) -> dict[tuple[str, int], object]:
    return {(r.strategy, r.seed): r for r in find_runs([root])}


def compare_exact(off: Path, exact: Path) -> list[str]:
    """Differences between the two sweeps' selections and accuracies (none expected)."""
    a, b = by_pair(off), by_pair(exact)
    problems = [] if a.keys() == b.keys() else [f"runs differ: {sorted(a)} vs {sorted(b)}"]
    for pair in sorted(a.keys() & b.keys()):
        if selections(a[pair].path) != selections(b[pair].path):
            problems.append(f"{pair}: selected ids differ")
        if a[pair].accuracy != b[pair].accuracy:
            problems.append(f"{pair}: accuracy {a[pair].accuracy} vs {b[pair].accuracy}")
    return problems


def overlap_and_aulc(exact: Path, approx: Path) -> tuple[float, float]:
    """Share of the exact runs' selected ids that the approximate runs also selected, and the
    mean AULC difference (approx − exact) over the runs that read the model."""
    a, b = by_pair(exact), by_pair(approx)
    common = total = 0
    deltas = []
    for pair in sorted(a.keys() & b.keys()):
        if pair[0] == "random":  # subsampling leaves random alone: identical by construction
            continue
        for x, y in zip(selections(a[pair].path), selections(b[pair].path), strict=True):
            common += len(set(x) & set(y))
            total += len(x)
        deltas.append(b[pair].aulc() - a[pair].aulc())
    return common / max(total, 1), sum(deltas) / max(len(deltas), 1)


def phases(root: Path) -> dict[str, dict[str, float]]:
    """Seconds per phase (summed over a run's rounds, mean over seeds) of each strategy."""
    out: dict[str, dict[str, list[float]]] = {}
    for run in sorted(p for p in root.iterdir() if (p / "metrics.jsonl").exists()):
        config = (run / "config.yaml").read_text()
        strategy = config.split("strategy: ", 1)[1].split()[0]
        totals: dict[str, float] = {}
        for line in (run / "metrics.jsonl").read_text().splitlines():
            for phase, seconds in json.loads(line)["seconds_per_phase"].items():
                totals[phase] = totals.get(phase, 0.0) + seconds
        for phase, seconds in totals.items():
            out.setdefault(strategy, {}).setdefault(phase, []).append(seconds)
    return {s: {p: sum(v) / len(v) for p, v in ph.items()} for s, ph in out.items()}


def mc_pass_cost(out: Path, smoke: bool) -> dict[str, float]:
    """Seconds of one scoring pass over 96 trec prompts, one thread: deterministic, and with
    the LoRA dropout live (one Monte-Carlo pass)."""
    stamp = out / "mc_pass_cost.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    import torch

    from star.config import LoraConfig, ModelConfig
    from star.engine import model as models
    from star.engine.batching import encode
    from star.engine.scoring import score
    from star.tasks.registry import load_split

    torch.set_num_threads(1)
    base, tok = models.load(ModelConfig(name="tiny-random" if smoke else "smollm2-135m"))
    items = encode(load_split("trec", "train")[:96], tok, 128, 16)
    peft = models.attach_lora(base, LoraConfig(r=16, alpha=16), 0).eval()

    def timed(repeats: int = 2) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            score(peft, items, tok.pad_token_id, 512)
            best = min(best, time.perf_counter() - start)
        return best

    times = {"deterministic": timed()}
    with models.mc_dropout(peft):
        times["mc"] = timed()
    stamp.write_text(json.dumps(times))
    return times


def run_seconds(root: Path, strategy: str) -> float:
    """Mean wall time of a strategy's runs in a sweep (their rounds' `seconds`)."""
    runs = [r for r in find_runs([root]) if r.strategy == strategy]
    return sum(r.seconds for r in runs) / len(runs)


def write_pool(path: Path, size: int | None) -> int:
    """BANKING77's training texts as an unlabelled pool file, and 64 of them labelled."""
    rows = [
        json.loads(line)
        for line in (ROOT / "src/star/tasks/data/banking77/train.jsonl").read_text().splitlines()
    ][:size]
    path.write_text("".join(json.dumps({"id": r["id"], "prompt": r["text"]}) + "\n" for r in rows))
    labels = path.with_name("seed-labels.jsonl")
    labels.write_text(
        "".join(
            json.dumps({"id": r["id"], "prompt": r["text"], "answer": r["label"]}) + "\n"
            for r in rows[:: len(rows) // 64][:64]
        )
    )
    return len(rows)


def next_seconds(out: Path, smoke: bool) -> dict[str, float]:
    """`star next --k 100` on a ~10,000-prompt project after one trained round."""
    stamp = out / "next_seconds.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    n = write_pool(out / "pool.jsonl", 300 if smoke else None)
    env = {**os.environ, "STAR_SIGNAL_CACHE": str(out / "signals")}
    times = {"pool": n}
    approx = ["--mc-top", "100", "--max-candidates", "1000"]
    for strategy, extra in (("random", []), ("star", approx)):
        project = out / strategy
        star(
            "init", str(project), "--pool", str(out / "pool.jsonl"),
            "--seed-labels", str(out / "seed-labels.jsonl"), "--strategy", strategy, *extra,
            "--lora-r", "16", "--lora-alpha", "16", "--lr", "5e-4", "--epochs", "2",
            "--batch-size", "4", *(["--model", "tiny-random"] if smoke else []),
            env=env,
        )  # fmt: skip
        star("train", str(project), env=env)
        times[strategy] = star("next", str(project), "--k", "100", env=env)
    stamp.write_text(json.dumps(times))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-experiments")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, tiny sizes")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    off = timed_sweep(out / "off", OFF, out / "signals-off", args.smoke)
    exact = timed_sweep(out / "exact", [], out / "signals-exact", args.smoke)
    problems = compare_exact(out / "off", out / "exact")
    approx = timed_sweep(out / "approx", APPROX, out / "signals-approx", args.smoke)
    overlap, delta = overlap_and_aulc(out / "exact", out / "approx")
    # each approximation alone, on the strategy it serves: two-stage MC on `star`
    mc_only = timed_sweep(out / "approx-mc", MC_ONLY, out / "signals-approx-mc", args.smoke)
    mc_overlap, mc_delta = overlap_and_aulc(out / "exact", out / "approx-mc")
    nxt = next_seconds(out / "next", args.smoke)
    mc = mc_pass_cost(out, args.smoke)
    print("seconds per run and phase (mean over seeds; sums over rounds):")
    for name in ("off", "exact", "approx"):
        for strategy, ph in sorted(phases(out / name).items()):
            cells = ", ".join(f"{p} {v:.0f}" for p, v in ph.items())
            print(f"  {name:<6} {strategy:<8} {cells}")
    print(f"sweep wall time: off {off:.0f} s, exact {exact:.0f} s, approx {approx:.0f} s")
    for p in problems:
        print(f"NOT EXACT: {p}")
    print(f"exact_identical: {'yes' if not problems else 'no'}")
    print(f"sweep_speedup_exact: {off / exact:.2f}x")
    print(f"sweep_speedup_approx: {off / approx:.2f}x")
    print(f"approx_selection_overlap: {overlap:.2f}")
    print(f"approx_aulc_delta: {delta:+.3f}")
    faster = run_seconds(out / "exact", "star") / run_seconds(out / "approx-mc", "star")
    print(
        f"two-stage MC alone (star runs): {faster:.2f}x "
        f"faster per run, overlap {mc_overlap:.2f}, aulc delta {mc_delta:+.3f} "
        f"(sweep of the star runs alone: {mc_only:.0f} s)"
    )
    print(f"next_seconds_random_10k: {nxt['random']:.0f} (pool of {nxt['pool']})")
    print(f"next_seconds_10k: {nxt['star']:.0f}")
    print(
        f"mc_pass_cost: {mc['mc'] / mc['deterministic']:.2f}x a deterministic pass "
        f"({mc['deterministic']:.1f} s, one thread)"
    )
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
