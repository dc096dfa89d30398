"""Measuring helpers shared by the benchmarks: wall time, the machine's matmul ceiling, peak
memory and a Llama's useful FLOPs, each on the CPU or the GPU the benchmark runs on."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from star.engine import memory


def sync() -> None:
    """Wait for queued GPU work, so a wall-clock reading means what it says."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Best-of-`repeat` wall seconds (best: the other process noise on 2 cores is one-sided)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, out


def matmul_ceiling(
    dtype: torch.dtype, n: int = 2048, seconds: float = 2.0, device: str = "cpu"
) -> float:
    """FLOP/s of a large nn.Linear-shaped product (x @ Wᵀ), the kernel every layer uses."""
    x = torch.randn(n, n, dtype=dtype, device=device)
    w = torch.randn(n, n, dtype=dtype, device=device)
    F.linear(x, w)
    sync()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or reps < 2:
        F.linear(x, w)
        reps += 1
        if device != "cpu" and reps % 10 == 0:
            sync()
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - start)


@contextmanager
def peak_memory():
    """Peak memory in bytes: `total`, and `bytes` above the level at entry (CUDA: the
    allocator's peak, tensors only; Linux CPUs: the resident peak VmHWM, reset via
    /proc/self/clear_refs, libraries included)."""
    box = {"bytes": 0, "total": 0}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield box
        torch.cuda.synchronize()
        box["total"] = torch.cuda.max_memory_allocated()
        box["bytes"] = box["total"] - base
        return
    base = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    yield box
    box["total"] = _status_kb("VmHWM") * 1024
    box["bytes"] = box["total"] - base * 1024


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = (x.argsort().argsort().double() for x in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


class Flops:
    """Useful FLOPs of a Llama-shaped model: linear layers on every real token, attention
    over the causal context, and the vocabulary projection only where a token is scored.
    LoRA's own matmuls count only where asked (`lora`: training, where they are the work
    that updates weights)."""

    def __init__(self, model):
        shape = memory.Shape.of(model.config)
        self.layers = shape.layers
        self.attn_width = shape.heads * shape.head_dim
        self.head = shape.vocab * shape.hidden
        self.linear = shape.linear_params()  # the frozen decoder weights, 4-bit ones included
        self.lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)

    def forward(self, lengths: list[int], scored: list[int]) -> float:
        """lengths: tokens per sequence; scored: positions per sequence that need logits."""
        attention = sum(2 * 2 * self.layers * self.attn_width * n * (n + 1) / 2 for n in lengths)
        return 2 * self.linear * sum(lengths) + attention + 2 * self.head * sum(scored)

    def training(self, lengths: list[int], scored: list[int]) -> float:
        """A LoRA step: the forward, the backward's input gradients through the frozen
        weights and attention (as much again), and LoRA's forward, input and weight
        gradients (6 FLOPs per adapter parameter per token)."""
        return 2 * self.forward(lengths, scored) + 6 * self.lora * sum(lengths)
