"""One round of LoRA training ("constraint LoRA", method.md §3), in one process or data-parallel.

Under several processes every batch is split between them and DDP (prepared by accelerate)
all-reduces the gradients; each process's loss is its share of the batch's summed token loss
over the whole batch's token count, so a step equals the one-process step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from star.config import TrainConfig
from star.crash import crash_point
from star.engine import distributed
from star.engine.batching import IGNORE, Batch, Encoded, collate, length_grouped_batches
from star.engine.model import checkpointing
from star.engine.scoring import answer_hidden, causal_lm


def optimizer_groups(model, b_decay: float) -> list[dict]:
    """Hybrid regulariser: decoupled weight decay β on lora_B only.

    B starts at zero; decaying it keeps ΔW = BA small and the tuned model from growing
    over-confident, while A (a random projection) is left alone.
    """
    b, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (b if "lora_B" in name else rest).append(p)
    return [{"params": b, "weight_decay": b_decay}, {"params": rest, "weight_decay": 0.0}]


class AnswerLoss(torch.nn.Module):
    """Summed cross-entropy over answer tokens; the vocabulary projection runs only there.

    A module, so that DDP wraps the whole loss computation (the forward goes through the
    decoder directly, past the PEFT model's own forward).
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels) -> torch.Tensor:
        hidden, targets, _ = answer_hidden(self.model, Batch(input_ids, attention_mask, labels))
        logits = causal_lm(self.model).get_output_embeddings()(hidden)  # (N, V)
        return F.cross_entropy(logits.float(), targets, reduction="sum")


def answer_loss(model, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the batch's answer tokens."""
    n_tokens = (batch.labels[:, 1:] != IGNORE).sum()
    return AnswerLoss(model)(batch.input_ids, batch.attention_mask, batch.labels) / n_tokens


def train_adapter(
    model, items: list[Encoded], pad_id: int, config: TrainConfig, seed: int
) -> float:
    """Train the attached adapter on `items`; returns the mean token loss of the last epoch
    (nan with 0 epochs: the adapter stays untrained, which evaluates the base model zero-shot).
    With `config.steps` it takes that many optimiser steps, epoch after epoch, the last one
    cut short.

    The linear schedule is sized from the training set (the authors sized it from the test
    set, so the rate reached zero early in later rounds).
    """
    on = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)  # the same batches on every process
    lengths = [len(x) for x in items]
    plan: list[list[list[int]]] = []  # each epoch's batches, drawn in order
    while items and (
        len(plan) < config.epochs if config.steps is None else sum(map(len, plan)) < config.steps
    ):
        plan.append(
            length_grouped_batches(lengths, config.batch_size, generator, config.batch_tokens)
        )
    acc = distributed.accelerator()
    loss_of, optimizer = acc.prepare(
        AnswerLoss(model), torch.optim.AdamW(optimizer_groups(model, config.b_decay), lr=config.lr)
    )
    steps = config.steps if config.steps is not None else sum(map(len, plan))
    schedule = get_linear_schedule_with_warmup(optimizer, round(config.warmup * steps), steps)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    if config.gradient_checkpointing:
        checkpointing(model, True)
    model.train()
    # the loss is summed on the device and read once at the end: no host sync per step
    total, tokens = torch.full((), math.nan, dtype=torch.float64, device=on), 1
    bar = tqdm(
        total=steps,
        desc="training",
        unit="step",
        disable=None if distributed.is_main() else True,
        leave=False,
    )
    taken = 0
    for batches in plan:
        total, tokens = torch.zeros((), dtype=torch.float64, device=on), 0
        for index in batches:
            if taken == steps:
                break
            taken += 1
            n_tokens = sum(len(items[i].target_ids) for i in index)  # the whole batch's
            mine = distributed.share(index)  # all of it in one process
            weight = distributed.world_size() / n_tokens if mine else 0.0
            batch = collate([items[i] for i in mine or index[:1]], pad_id).to(on)
            loss = loss_of(batch.input_ids, batch.attention_mask, batch.labels) * weight
            acc.backward(loss)
            if config.grad_clip > 0:
                acc.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            crash_point("train step")
            total += (loss.detach() / weight if mine else loss.detach()).double()
            tokens += n_tokens
            bar.update()
    bar.close()
    acc.free_memory()  # drop accelerate's references to this round's model and optimiser
    if config.gradient_checkpointing:
        checkpointing(model, False)
    model.eval()
    return _summed(total) / tokens


def _summed(value: torch.Tensor) -> float:
    """A per-process value summed over the processes (one host sync)."""
    return distributed.accelerator().reduce(value, "sum").item()
