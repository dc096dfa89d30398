"""`star estimate`: a run's memory, worked out before any weight loads (engine.memory)."""

from __future__ import annotations

import torch

from star.active.step import memory_need
from star.config import RunConfig
from star.engine import memory
from star.engine import model as models
from star.engine.batching import encode
from star.errors import ModelError
from star.experiment.loop import load_splits
from star.method.strategies import configure
from star.tasks.resolve import resolve


def estimate(config: RunConfig, target: str | None = None) -> list[str]:
    """The lines `star estimate` prints: the model, the longest batch of the run's own
    examples (its pool and evaluation rows, tokenised as the run will), and each part.
    target: the device to estimate for ("cuda", "cpu"); unset: this process's."""
    config, task = resolve(configure(config))
    splits = load_splits(config, task)
    on = models.device() if target is None else torch.device(target)
    if target is None:
        models.check_runtime(config.model, on)
    d = config.data
    tokenizer = models.load_tokenizer(config.model)
    encoded = encode(splits.pool + splits.eval, tokenizer, d.max_prompt_tokens, d.max_target_tokens)
    try:
        need = memory_need(config, encoded, on)
    except memory.NotEstimated as e:
        raise ModelError(f"{config.model.name}: {e}") from None
    s, m = need.settings, need.shape
    dtype = "bfloat16" if s.dtype_bytes == 2 else "float32"
    quantized = ", weights in 4-bit NF4" if s.quantize == "4bit" else ""
    here = on.type == models.device().type
    return [
        f"star estimate: {config.task} on {config.model.name}, {on.type}, {dtype}{quantized}",
        f"model: {m.params() / 1e6:.1f} M parameters ({m.layers} layers, hidden {m.hidden}, "
        f"MLP {m.intermediate}, {m.heads} heads / {m.kv_heads} KV, vocab {m.vocab}); LoRA r "
        f"{s.r} on {len(s.targets)} module kinds: {m.lora_params(s.r, s.targets) / 1e6:.2f} M",
        f"longest training batch: {need.rows} rows × {need.tokens} tokens, {need.answers} "
        f"answer tokens (of {len(encoded)} examples); gradient checkpointing "
        + ("on" if s.checkpointing else "off"),
        "training step:",
        *need.training.lines(),
        "inference (scoring, option evaluation, generation):",
        *need.inference.lines(),
        f"peak: {need.peak / memory.GIB:.2f} GiB"
        + (f" of this {on.type}'s {memory.capacity(on) / memory.GIB:.1f} GiB" if here else "")
        + (" (plus the CUDA context, ~0.5 GiB)" if on.type == "cuda" else ""),
    ]
