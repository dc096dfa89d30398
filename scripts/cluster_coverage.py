"""Do cluster-stratified picks on the base model's prompt embeddings cover a task's gold
classes better than random picks? No training: the check behind docs/results.md's "Why
`typical` does not win here".

    .venv/bin/python scripts/cluster_coverage.py trec sst2

For seed 0's pool of 1,000 training rows: classes covered and label entropy of k picks, random
(mean of 30 draws) against `cluster_stratified` with constant scores (the `typical` strategy's
first batch; mean of 5 selector seeds), on the mean-pooled embedding star uses and on the
hidden state at the last prompt token.
"""

from __future__ import annotations

import collections
import math
import sys

import torch

from star import model as models
from star.config import ModelConfig
from star.data import Encoded, collate, encode, token_budget_batches
from star.scoring import embed, final_states
from star.selection import cluster_stratified
from star.tasks import load_split, sample


def last_token_states(model, prompts: list[list[int]], pad_id: int) -> torch.Tensor:
    out = torch.zeros(len(prompts), model.config.hidden_size)
    for index in token_budget_batches([len(p) for p in prompts], 4096):
        batch = collate([Encoded(prompts[i], []) for i in index], pad_id)
        with torch.inference_mode():
            states = final_states(model, batch)  # (B, T, H)
        ends = batch.attention_mask.sum(1) - 1
        out[torch.tensor(index)] = states[torch.arange(len(index)), ends].float()
    return out


def entropy(counts: collections.Counter) -> float:
    n = sum(counts.values())
    return -sum(v / n * math.log(v / n) for v in counts.values() if v)


def main(tasks: list[str]) -> None:
    model, tok = models.load(ModelConfig(name="smollm2-135m"))
    for task in tasks:
        pool = sample(load_split(task, "train"), 1000, 0)
        prompts = [x.prompt_ids for x in encode(pool, tok, 128, 16)]
        labels = [e.answer for e in pool]
        spaces = {
            "mean": embed(model, prompts, tok.pad_token_id, 4096),
            "last": last_token_states(model, prompts, tok.pad_token_id),
        }
        for k in (16, 32, 64):
            draws = [
                torch.randperm(len(pool), generator=torch.Generator().manual_seed(s))[:k].tolist()
                for s in range(30)
            ]
            line = f"{task} k={k}: random " + summary(draws, labels)
            for name, x in spaces.items():
                picks = [
                    cluster_stratified(
                        x, x[:0], torch.zeros(len(pool)), k, torch.Generator().manual_seed(s)
                    )
                    for s in range(5)
                ]
                line += f" | {name} " + summary(picks, labels)
            print(line, flush=True)


def summary(picks: list[list[int]], labels: list[str]) -> str:
    counts = [collections.Counter(labels[i] for i in p) for p in picks]
    covered = sum(len(c) for c in counts) / len(counts)
    return f"covers {covered:.1f} classes, entropy {sum(map(entropy, counts)) / len(counts):.2f}"


if __name__ == "__main__":
    main(sys.argv[1:])
