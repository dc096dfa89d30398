"""The GPU path's figures in one process (docs/performance.md, "On a GPU").

For Llama shapes built with random weights (no pretrained weights travel, only a tokenizer),
saved and loaded back through star's own loader (dtype, attention kernel, 4-bit QLoRA), it
prints per shape:
  * training: tokens/s and MFU of LoRA steps (LoRA's FLOPs counted), and the step's peak
    memory against `star estimate`'s prediction (engine.memory) for the same batch;
  * scoring (teacher-forced pool passes) and option evaluation: tokens/s and MFU;
  * generation: new tokens/s;
  * one full active-learning round as `star` runs it: train on the labelled set, score the
    pool with the base model and the tuned model's Monte-Carlo passes, select; seconds per
    part, and the round's peak memory against the estimate.
MFU is against the matmul ceiling measured in the same process (same device, same dtype).

    python benchmarks/device.py                      # GPU: 135M, 1B, 7B (4-bit) shapes
    python benchmarks/device.py --shapes tiny        # CPU, CI: the same code on a tiny shape
    python benchmarks/device.py --tokenizer DIR      # a folder with tokenizer files

Random weights make random answers; every figure here is speed or memory, none is accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

os.environ.setdefault("STAR_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "star"))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from measure import Flops, matmul_ceiling, peak_memory, timed  # noqa: E402

from star.config import (  # noqa: E402
    InferenceConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from star.engine import memory  # noqa: E402
from star.engine import model as models  # noqa: E402
from star.engine.batching import Encoded  # noqa: E402
from star.engine.generate import generate  # noqa: E402
from star.engine.options import option_logprobs  # noqa: E402
from star.engine.scoring import score  # noqa: E402
from star.engine.train import train_adapter  # noqa: E402
from star.method.strategies import STRATEGIES, Signals  # noqa: E402

ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# (hidden, layers, intermediate, heads, kv heads, tied); the vocabulary is the tokenizer's
SHAPES = {
    "tiny": (256, 4, 1024, 4, 4, True),  # the test model's shape
    "135m": (576, 30, 1536, 9, 3, True),  # SmolLM2-135M
    "1b": (2048, 16, 8192, 32, 8, True),  # Llama-3.2-1B
    "7b": (4096, 32, 11008, 32, 32, False),  # Llama-2-7B, the paper's model: 4-bit on a GPU
    "7b-bf16": (4096, 32, 11008, 32, 32, False),  # the same, unquantised
}


@dataclass(frozen=True)
class Sizes:
    """How much work each figure measures (GPU: the issue's round; CPU: a smoke-sized one)."""

    labelled: int  # training rows of the round
    pool: int  # prompts the round scores
    passes: int  # the `star` strategy's Monte-Carlo passes
    query: int  # examples the round selects
    generate: int  # prompts generated together
    new_tokens: int
    options: int  # prompts of the option evaluation, 4 options each
    batch_tokens: int
    prompt: tuple[int, int]  # prompt lengths drawn from this range


GPU = Sizes(512, 10_000, 3, 512, 96, 32, 2_000, 8192, (32, 128))
CPU = Sizes(32, 96, 3, 16, 8, 8, 32, 512, (16, 48))


def build(name: str, tokenizer_dir: Path, dtype: torch.dtype, folder: Path) -> None:
    """A Llama of the shape with seeded random weights, saved with the tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hidden, layers, intermediate, heads, kv, tied = SHAPES[name]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    on = models.device()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the dtype, on the device: a 7B model is 13 GB
    try:
        with on:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model


def items(n: int, sizes: Sizes, vocab: int, generator: torch.Generator) -> list[Encoded]:
    """Random prompts with two-token answers (a class name), lengths drawn per row."""
    low, high = sizes.prompt
    lengths = torch.randint(low, high + 1, (n,), generator=generator).tolist()
    ids = torch.randint(10, vocab, (sum(lengths) + 2 * n,), generator=generator).tolist()
    out, at = [], 0
    for length in lengths:
        out.append(Encoded(ids[at : at + length], ids[at + length : at + length + 2]))
        at += length + 2
    return out


def gib(x: float) -> str:
    return f"{x / memory.GIB:.2f} GiB"


def against(peak: dict, estimate: float) -> str:
    """The measured peak beside the estimate: comparable on a GPU (tensors alone)."""
    if torch.cuda.is_available():
        ratio = peak["total"] / estimate
        return (
            f"peak {gib(peak['total'])}, estimated {gib(estimate)} (measured/estimated {ratio:.2f})"
        )
    return (
        f"peak resident {gib(peak['total'])} (the whole process), estimated {gib(estimate)} "
        "of tensors"
    )


def run_shape(name: str, quantize: str, sizes: Sizes, tokenizer_dir: Path, ceiling: float) -> None:
    on = models.device()
    dtype = models.pick_dtype("auto", on)
    tag = f"[{name} {str(dtype).removeprefix('torch.')}{' 4-bit' if quantize == '4bit' else ''}]"
    with tempfile.TemporaryDirectory() as tmp:
        build(name, tokenizer_dir, dtype, Path(tmp))
        model_config = ModelConfig(name=tmp, quantize=quantize)
        base, tok = models.load_weights(model_config), models.load_tokenizer(model_config)
    vocab = len(tok)
    pad = tok.pad_token_id
    g = torch.Generator().manual_seed(0)
    lora = LoraConfig(r=16, alpha=16, dropout=0.1, target_modules=ALL)
    model = models.attach_lora(base, lora, seed=0)
    flops = Flops(model)
    merge = models.merge_pays(None, on, quantize != "none")
    labelled = items(sizes.labelled, sizes, vocab, g)
    train = TrainConfig(lr=1e-4, epochs=1, batch_size=8, b_decay=0.5)
    run = RunConfig(
        model=model_config,
        lora=lora,
        train=train,
        inference=InferenceConfig(batch_tokens=sizes.batch_tokens, eval_batch_size=sizes.generate),
    )
    parts = [(len(x.prompt_ids), len(x.target_ids)) for x in labelled]  # (prompt, answer)
    need = memory.need(run, base.config, parts, on, *models.resolved(run, on))
    print(
        f"{tag} {flops.linear / 1e6:,.0f} M decoder weights, LoRA r16 on 7 modules "
        f"({flops.lora / 1e6:.1f} M); estimate: training step {gib(need.training.total)}, "
        f"inference {gib(need.inference.total)}",
        flush=True,
    )

    # training, with its peak memory against the estimate for the longest batch
    train_adapter(model, labelled[:16], pad, train, seed=1)  # warm-up: kernels, allocator
    with peak_memory() as peak:
        seconds, _ = timed(lambda: train_adapter(model, labelled, pad, train, seed=0))
    lengths = [len(x) for x in labelled]
    step_flops = flops.training(lengths, [len(x.target_ids) for x in labelled])
    print(
        f"{tag} training: {sum(lengths) / seconds:,.0f} tokens/s, MFU "
        f"{step_flops / seconds / ceiling:.2f} ({len(labelled)} rows, batch 8); "
        + against(peak, need.training.total),
        flush=True,
    )

    # one step on the longest batch, with and without checkpointing: peak against estimate
    longest = [max(labelled, key=len)] * 8
    for recompute in (False, True):
        step = dataclasses.replace(train, gradient_checkpointing=recompute)
        planned = dataclasses.replace(run, train=step)
        parts = [(len(longest[0].prompt_ids), len(longest[0].target_ids))]
        need_step = memory.need(planned, base.config, parts, on, *models.resolved(run, on))
        with peak_memory() as peak:
            train_adapter(model, longest, pad, step, seed=0)
        print(
            f"{tag} memory, one step of 8 × {len(longest[0])} tokens, gradient checkpointing "
            f"{'on' if recompute else 'off'}: " + against(peak, need_step.training.total),
            flush=True,
        )

    # scoring and option evaluation (deterministic passes, adapter merged where it pays)
    pool = items(sizes.pool, sizes, vocab, g)
    scored = pool[: max(sizes.options, 64)]
    with models.merged(model, merge):
        score(model, scored[:8], pad, sizes.batch_tokens)  # warm-up
        seconds, _ = timed(lambda: score(model, scored, pad, sizes.batch_tokens))
    tokens = [len(x) for x in scored]
    work = flops.forward(tokens, [len(x.target_ids) for x in scored])
    print(
        f"{tag} scoring: {sum(tokens) / seconds:,.0f} tokens/s, MFU {work / seconds / ceiling:.2f}",
        flush=True,
    )
    prompts = [Encoded(x.prompt_ids, []) for x in pool[: sizes.options]]
    options = [[[11 + k, 20 + k] for k in range(4)]] * len(prompts)
    with models.merged(model, merge):
        option_logprobs(model, prompts[:8], options[:8], pad, sizes.batch_tokens)
        seconds, _ = timed(
            lambda: option_logprobs(model, prompts, options, pad, sizes.batch_tokens)
        )
    prompt_tokens = [len(p.prompt_ids) for p in prompts]
    work = flops.forward(prompt_tokens, [1] * len(prompts)) + flops.forward(
        [1] * (4 * len(prompts)), [1] * (4 * len(prompts))
    )
    total = sum(prompt_tokens) + 8 * len(prompts)
    print(
        f"{tag} option evaluation: {total / seconds:,.0f} tokens/s, MFU "
        f"{work / seconds / ceiling:.2f} (4 options of 2 tokens per prompt)",
        flush=True,
    )

    # generation: new tokens per second, every row running to the end
    asked = prompts[: sizes.generate]
    with models.merged(model, merge):
        seconds, _ = timed(
            lambda: generate(
                model, tok, asked, sizes.new_tokens, len(asked), sizes.batch_tokens, None, False
            )
        )
    print(
        f"{tag} generation: {len(asked) * sizes.new_tokens / seconds:,.0f} new tokens/s "
        f"({len(asked)} prompts × {sizes.new_tokens} tokens)",
        flush=True,
    )
    model.unload()
    round_(tag, base, lora, train, labelled, pool, sizes, pad, need)


def round_(tag, base, lora, train, labelled, pool, sizes: Sizes, pad: int, need) -> None:
    """One round as `star` runs it: a fresh adapter trained on the labelled set, the base
    model's pass and the tuned model's Monte-Carlo passes over the pool, STAR's selection."""
    parts = {}
    with peak_memory() as peak:
        parts["base pass"], base_scores = timed(lambda: score(base, pool, pad, sizes.batch_tokens))
        model = models.attach_lora(base, lora, seed=0)
        parts["train"], _ = timed(lambda: train_adapter(model, labelled, pad, train, seed=0))
        with models.mc_dropout(model):
            parts[f"{sizes.passes} MC passes"], tuned = timed(
                lambda: score(model, pool, pad, sizes.batch_tokens, passes=sizes.passes)
            )
        signals = Signals(
            size=len(pool),
            round=0,
            generator=torch.Generator().manual_seed(0),
            tuned=lambda: tuned,
            base=lambda: base_scores,
        )
        ids = [str(i) for i in range(len(pool))]
        parts["select"], _ = timed(lambda: STRATEGIES["star"].choose(signals, ids, sizes.query))
        model.unload()
    spent = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
    print(
        f"{tag} round (train {len(labelled)}, score {len(pool):,} prompts, select "
        f"{sizes.query}): {sum(parts.values()):.1f} s ({spent}); " + against(peak, need.peak),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    gpu = torch.cuda.is_available()
    parser.add_argument(
        "--shapes",
        default="135m,1b,7b,7b-bf16" if gpu else "tiny",
        help="comma-separated: " + ", ".join(SHAPES) + " (the 7B shape runs 4-bit on a GPU)",
    )
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="folder with tokenizer files (default: the tiny test model's, built once)",
    )
    args = parser.parse_args()
    tokenizer_dir = args.tokenizer or models.model_folder(models.TINY)
    on = models.device()
    dtype = models.pick_dtype("auto", on)
    ceiling = matmul_ceiling(dtype, n=8192 if gpu else 1024, device=on.type)
    name = torch.cuda.get_device_name(on) if gpu else "CPU"
    print(
        f"device: {name}; {str(dtype).removeprefix('torch.')} matmul ceiling "
        f"{ceiling / 1e12:.2f} TFLOP/s (same process)",
        flush=True,
    )
    sizes = GPU if gpu else CPU
    four_bit = gpu and _has("bitsandbytes")
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            print(f"device.py: unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
            return 2
        quantize = "4bit" if shape == "7b" and four_bit else "none"
        run_shape(shape, quantize, sizes, tokenizer_dir, ceiling)
        if gpu:
            torch.cuda.empty_cache()
    if not four_bit:
        print("4-bit QLoRA: not measured here (needs a CUDA GPU and bitsandbytes)")
    return 0


def _has(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


if __name__ == "__main__":
    sys.exit(main())
