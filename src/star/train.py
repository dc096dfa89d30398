"""One round of LoRA training ("constraint LoRA", method.md §3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from star.config import TrainConfig
from star.data import Encoded, collate, length_grouped_batches
from star.scoring import answer_hidden, causal_lm
from star.state import crash_point


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


def answer_loss(model, batch) -> torch.Tensor:
    """Mean cross-entropy over answer tokens; the vocabulary projection runs only there."""
    hidden, targets, _ = answer_hidden(model, batch)  # (N, H), (N,)
    logits = causal_lm(model).get_output_embeddings()(hidden)  # (N, V)
    return F.cross_entropy(logits.float(), targets)


def train_adapter(
    model, items: list[Encoded], pad_id: int, config: TrainConfig, seed: int
) -> float:
    """Train the attached adapter on `items`; returns the mean loss of the last epoch.

    The linear schedule is sized from the training set (the authors sized it from the test
    set, so the rate reached zero early in later rounds).
    """
    on = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(items) / config.batch_size)
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.b_decay), lr=config.lr)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, config.epochs * steps_per_epoch)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    model.train()
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        desc="training",
        unit="step",
        disable=None,
        leave=False,
    )
    for _ in range(config.epochs):
        losses = []
        for index in length_grouped_batches([len(x) for x in items], config.batch_size, generator):
            loss = answer_loss(model, collate([items[i] for i in index], pad_id).to(on))
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            crash_point("train step")
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()
    return sum(losses) / len(losses)
