"""What a configuration needs in device memory, from the model's config.json alone.

`star estimate` prints it before anything loads, and a run refuses a batch that cannot fit
before loading the weights. The parts (bytes):

- weights: every parameter in the compute dtype; with 4-bit QLoRA the decoder's linear layers
  take NF4's 4 bits plus double-quantised block scales (Dettmers et al. 2023: ~0.127 bit per
  parameter), embeddings, norms and the head stay in the compute dtype;
- adapter: LoRA's A and B in fp32 (PEFT keeps adapters in fp32 over a bf16 base), their
  gradients and AdamW's two moments: 16 bytes per LoRA parameter;
- activations: what autograd keeps for the backward pass, per token and decoder layer, counted
  from the tensors PyTorch saves in a Llama layer with LoRA on the given modules
  (`layer_activations`; tests/test_memory.py checks the count against autograd's own).
  With gradient checkpointing only each layer's input is kept, plus one layer recomputed;
- answer logits: the vocabulary projection at answer positions, in fp32, with its gradient;
- workspace: the backward pass's gradients of one layer's activations at a time.

Inference (scoring, option evaluation, generation) needs the weights, a KV cache of the
longest generation batch and one layer's transient activations at the scoring token budget.
Not counted: the CUDA context (~0.5 GB, outside PyTorch's allocator) and allocator
fragmentation; a GPU check compares the total with `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from star.config import RunConfig
from star.errors import ModelError

NF4_BYTES = (4 + 0.127) / 8  # per quantised weight, block scales included
ADAPTER_BYTES = 4  # LoRA weights are fp32 whatever the base dtype (PEFT's autocast)
ADAPTER_STATE = 4 * ADAPTER_BYTES  # weight, gradient, AdamW's exp_avg and exp_avg_sq
LOGIT_BLOCK = 256  # rows of the vocabulary projection per block when scoring (engine.scoring)
GIB = 2**30


class NotEstimated(ValueError):
    """A model whose architecture the estimate does not know."""


@dataclass(frozen=True)
class Shape:
    """A Llama-style decoder's dimensions (Llama, Mistral, Qwen2, SmolLM2 and kin)."""

    vocab: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool

    @classmethod
    def of(cls, config) -> Shape:
        """From a transformers config; a missing field raises NotEstimated."""
        need = ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size")
        missing = [k for k in need + ("num_attention_heads",) if getattr(config, k, None) is None]
        if missing:
            kind = getattr(config, "model_type", "unknown")
            raise NotEstimated(
                f"a {kind!r} config lacks {', '.join(missing)}: the estimate knows Llama-style "
                "decoders"
            )
        heads = config.num_attention_heads
        return cls(
            vocab=config.vocab_size,
            hidden=config.hidden_size,
            layers=config.num_hidden_layers,
            intermediate=config.intermediate_size,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            tied=bool(getattr(config, "tie_word_embeddings", False)),
        )

    def widths(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of a decoder layer."""
        h, q, kv, i = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        )
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def linear_params(self) -> int:
        """Parameters of the decoder's linear layers (what 4-bit quantisation stores in NF4)."""
        return self.layers * sum(a * b for a, b in self.widths().values())

    def other_params(self) -> int:
        """Embeddings, the head when untied, and the norms."""
        head = 0 if self.tied else self.vocab * self.hidden
        return self.vocab * self.hidden + head + (2 * self.layers + 1) * self.hidden

    def params(self) -> int:
        return self.linear_params() + self.other_params()

    def lora_params(self, r: int, targets: tuple[str, ...]) -> int:
        widths = self.widths()
        return self.layers * sum(r * sum(widths[t]) for t in targets if t in widths)


@dataclass(frozen=True)
class Settings:
    """The options that decide memory (from a RunConfig, or a benchmark's own)."""

    dtype_bytes: int  # 2 for bfloat16, 4 for float32
    quantize: str  # "none" | "4bit"
    r: int
    targets: tuple[str, ...]
    checkpointing: bool
    cuda: bool  # CUDA's dropout keeps a one-byte mask per dropped element; the CPU's does not


@dataclass(frozen=True)
class Estimate:
    """Bytes per part, in the order printed."""

    parts: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def lines(self) -> list[str]:
        width = max(len(k) for k in self.parts)
        rows = [f"  {k:<{width}}  {v / GIB:9.3f} GiB" for k, v in self.parts.items()]
        return rows + [f"  {'total':<{width}}  {self.total / GIB:9.3f} GiB"]


def weight_bytes(shape: Shape, s: Settings) -> float:
    if s.quantize == "4bit":
        return shape.linear_params() * NF4_BYTES + shape.other_params() * s.dtype_bytes
    return shape.params() * s.dtype_bytes


def layer_activations(shape: Shape, s: Settings) -> float:
    """Bytes autograd keeps per token in one decoder layer while training (no checkpointing).

    Counted from the tensors PyTorch saves in a Llama layer: the two RMSNorms' fp32 inputs and
    scales; q, k, v and the attention output, and the MLP's gate, up and gated product, in the
    compute dtype (the rotary tables are shared by all layers); per adapted linear layer its
    input cast to fp32 and dropped (two fp32 copies, plus a one-byte mask on CUDA) and its
    rank-r A output.
    """
    e, h, i = s.dtype_bytes, shape.hidden, shape.intermediate
    kv = shape.kv_heads * shape.head_dim
    q = shape.heads * shape.head_dim
    widths = shape.widths()
    adapted = [widths[t][0] for t in s.targets if t in widths]
    mask = 1 if s.cuda else 0
    adapter = sum(d * (2 * ADAPTER_BYTES + mask) + s.r * ADAPTER_BYTES for d in adapted)
    norms = 2 * (4 * h + 4)
    return norms + e * (2 * q + 2 * kv + 3 * i) + adapter


def training(shape: Shape, s: Settings, rows: int, tokens: int, answers: int) -> Estimate:
    """Peak of one training step on the longest batch: `rows` rows padded to `tokens`, with
    `answers` answer tokens in all (the positions the vocabulary projection runs at)."""
    n = rows * tokens
    layer = layer_activations(shape, s) * n
    if s.checkpointing:  # each layer's input kept; one layer's activations live again
        activations = shape.layers * n * shape.hidden * s.dtype_bytes + layer
    else:
        activations = shape.layers * layer
    return Estimate(
        {
            "weights": weight_bytes(shape, s),
            "LoRA + gradients + AdamW": shape.lora_params(s.r, s.targets) * ADAPTER_STATE,
            "activations": activations,
            "answer logits": answers * shape.vocab * (s.dtype_bytes + 8),
            "backward workspace": layer,
        }
    )


def inference(shape: Shape, s: Settings, batch_tokens: int, rows: int, tokens: int) -> Estimate:
    """Peak of scoring and generation: forward passes of `batch_tokens` tokens, and generation
    of `rows` prompts at once growing to `tokens` tokens (the KV cache)."""
    e, h = s.dtype_bytes, shape.hidden
    kv = shape.kv_heads * shape.head_dim
    transient = batch_tokens * (4 * h * 4 + 3 * shape.intermediate * e)  # one layer, nothing kept
    return Estimate(
        {
            "weights": weight_bytes(shape, s),
            "KV cache": rows * tokens * shape.layers * 2 * kv * e,
            "one layer's activations": transient,
            "logits": 3 * LOGIT_BLOCK * shape.vocab * 4,
        }
    )


@dataclass(frozen=True)
class Need:
    """A run's memory: its training step on the longest batch and its inference passes."""

    shape: Shape
    settings: Settings
    rows: int  # the longest training batch: rows × tokens, `answers` answer tokens
    tokens: int
    answers: int
    training: Estimate
    inference: Estimate

    @property
    def peak(self) -> float:
        return max(self.training.total, self.inference.total)


def need(
    config: RunConfig,
    model_config,
    lengths: Sequence[tuple[int, int]],
    on: torch.device,
    dtype: torch.dtype,
    batch_tokens: int,
) -> Need:
    """What `config` needs on `on` for examples of these (prompt, answer) token lengths
    (after the prompt cut); the longest batch is `batch_size` rows of the longest example (or
    as many as `train.batch_tokens` holds).
    dtype and batch_tokens: as the engine resolves them for `on` (engine.model)."""
    shape = Shape.of(model_config)
    settings = Settings(
        dtype_bytes=dtype.itemsize,
        quantize=config.model.quantize,
        r=config.lora.r,
        targets=config.lora.target_modules,
        checkpointing=config.train.gradient_checkpointing,
        cuda=on.type == "cuda",
    )
    longest = max((p + a for p, a in lengths), default=1)
    answer = max((a for _, a in lengths), default=1)
    rows = config.train.batch_size
    if config.train.batch_tokens is not None:  # as many rows of the longest as fit
        rows = max(1, config.train.batch_tokens // longest)
    generation = config.inference.eval_batch_size
    return Need(
        shape,
        settings,
        rows,
        longest,
        rows * answer,
        training(shape, settings, rows, longest, rows * answer),
        inference(shape, settings, batch_tokens, generation, longest),
    )


SHARE_VARIABLE = "STAR_MEMORY_SHARE"  # set by `star sweep --jobs N`: 1/N of the device


def share() -> float:
    """This process's share of the device's memory (1 unless a sweep set it)."""
    value = os.environ.get(SHARE_VARIABLE, "1")
    try:
        fraction = float(value)
    except ValueError:
        raise ModelError(f"{SHARE_VARIABLE} must be a number in (0, 1], got {value!r}") from None
    if not 0 < fraction <= 1:
        raise ModelError(f"{SHARE_VARIABLE} must be in (0, 1], got {value!r}")
    return fraction


def claim(on: torch.device) -> None:
    """Cap this process's GPU allocations at its share, so runs sharing a GPU cannot starve
    each other: one over its share fails with an out-of-memory error of its own."""
    if on.type == "cuda" and share() < 1:
        torch.cuda.set_per_process_memory_fraction(share(), on)


def capacity(on: torch.device) -> int:
    """Bytes this process may use: its share of the GPU's memory, or of the machine's RAM."""
    if on.type == "cuda":
        total = torch.cuda.get_device_properties(on).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(total * share())


def check_fits(n: Need, on: torch.device) -> None:
    """Refuse, before the weights load, a configuration whose estimate exceeds the device."""
    have = capacity(on)
    if n.peak <= have:
        return
    part = "a training step" if n.training.total >= n.inference.total else "inference"
    raise ModelError(
        f"{part} needs about {n.peak / GIB:.1f} GiB (longest training batch {n.rows} rows × "
        f"{n.tokens} tokens) but this process has {have / GIB:.1f} GiB of the {on.type}: lower "
        "--batch-size or --max-prompt-tokens, use --gradient-checkpointing or --quantize "
        "4bit, or fewer sweep --jobs (`star estimate` shows the parts)"
    )
