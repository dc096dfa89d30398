"""Every (strategy, seed) pair of an experiment as its own resumable `star run` process.

A finished run is skipped by `star run` itself (it resumes after its last round), so a sweep
killed at any point is finished by running the same command again. Pairs run `jobs` at a time,
each with cores ÷ jobs threads unless told otherwise, and on a GPU each within 1/jobs of its
memory: a small model's runs are launch-bound, so several at once fill the device.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from star.engine.memory import SHARE_VARIABLE
from star.method.strategies import STRATEGIES


def cost(strategy: str) -> int:
    """A rough rank of a strategy's run time: 0 no scoring, 1 one pass, K for K MC passes."""
    if strategy == "random":
        return 0
    return int(STRATEGIES[strategy].defaults.get("uncertainty.mc_passes", 1))


@dataclass(frozen=True)
class Pair:
    strategy: str
    seed: int

    def out(self, root: Path) -> Path:
        return root / f"{self.strategy}-seed{self.seed}"


def sweep(
    root: Path,
    pairs: list[Pair],
    run_args: list[str],
    jobs: int = 1,
    threads: int | None = None,
    on_done: Callable[[Pair, int, float], None] | None = None,
) -> dict[Pair, int]:
    """Run the pairs; returns each pair's exit code (0 = finished). Each run's output is
    appended to ROOT/logs/<run>.log. Threads per run default to cores ÷ jobs; set them to share
    the cores with other work (another sweep, say)."""
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        # on one GPU each run holds at most its share of the memory (engine.memory.share)
        SHARE_VARIABLE: f"{1 / jobs:.6f}",
    }
    waiting, running, codes = list(pairs), {}, {}
    while waiting or running:
        while waiting and len(running) < jobs:
            pair = waiting.pop(0)
            out = pair.out(root)
            (root / "logs").mkdir(parents=True, exist_ok=True)
            log = open(root / "logs" / f"{out.name}.log", "a")
            cmd = [
                sys.executable,
                "-m",
                "star",
                "run",
                "--out",
                str(out),
                *run_args,
                "--strategy",
                pair.strategy,
                "--seed",
                str(pair.seed),
                "-q",
            ]
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[pair] = (proc, log, time.perf_counter())
        for pair, (proc, log, start) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                codes[pair] = proc.returncode
                del running[pair]
                if on_done:
                    on_done(pair, proc.returncode, time.perf_counter() - start)
        time.sleep(0.2)
    return codes
