"""Do the base model's prompt embeddings separate a task's gold classes, and do cluster-
stratified picks on them cover more classes than random picks? No training: the check behind
docs/results.md's "Why `typical` does not win here".

    .venv/bin/python scripts/cluster_coverage.py trec banking77 sst2

For seed 0's pool of 1,000 training rows and each embedding space:
  - kNN: leave-one-out accuracy of a 10-nearest-neighbour vote (cosine) with every other pool
    row labelled, i.e. how well the space separates the classes at all (majority share for
    reference);
  - classes covered by k picks of `cluster_stratified` with constant scores (the `typical`
    strategy's first batch; mean of 3 selector seeds) against random picks (mean of 30 draws).
Spaces: star's (final layer, mean over the prompt), the same standardised per dimension
over the pool before the cosine ("std"), layer 15's mean standardised, and the final layer at
the last prompt token.
"""

from __future__ import annotations

import collections
import sys

import torch

from star.config import ModelConfig
from star.engine import model as models
from star.engine.batching import Encoded, collate, encode, token_budget_batches
from star.engine.scoring import causal_lm
from star.method.selection import cluster_stratified, unit_rows
from star.tasks.registry import load_split
from star.tasks.resolve import sample

MID = 15  # of SmolLM2-135M's 30 layers


def spaces(model, prompts: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """name -> (n, H) embeddings of the prompts."""
    size = model.config.hidden_size
    out = {name: torch.zeros(len(prompts), size) for name in ("final", "mid", "last")}
    for index in token_budget_batches([len(p) for p in prompts], 4096):
        batch = collate([Encoded(prompts[i], []) for i in index], pad_id)
        with torch.inference_mode():
            states = (
                causal_lm(model)
                .get_decoder()(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    output_hidden_states=True,
                    use_cache=False,
                )
                .hidden_states
            )
        mask = batch.attention_mask[..., None].float()  # (B, T, 1)
        where = torch.tensor(index)
        for name, layer in (("final", -1), ("mid", MID)):
            h = states[layer].float()
            out[name][where] = (h * mask).sum(1) / mask.sum(1)
        ends = batch.attention_mask.sum(1) - 1
        out["last"][where] = states[-1].float()[torch.arange(len(index)), ends]
    return {
        "star (final, mean)": out["final"],
        "final, mean, std": standardised(out["final"]),
        f"layer {MID}, mean, std": standardised(out["mid"]),
        "final, last token": out["last"],
    }


def standardised(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(0)) / x.std(0).clamp_min(1e-6)


def knn_accuracy(x: torch.Tensor, labels: list[str], k: int = 10) -> float:
    points = unit_rows(x)
    near = (points @ points.T).fill_diagonal_(-2.0).topk(k, dim=1).indices
    votes = (
        collections.Counter(labels[j] for j in row).most_common(1)[0][0] for row in near.tolist()
    )
    return sum(v == y for v, y in zip(votes, labels, strict=True)) / len(labels)


def covered(picks: list[list[int]], labels: list[str]) -> float:
    return sum(len({labels[i] for i in p}) for p in picks) / len(picks)


def main(tasks: list[str]) -> None:
    model, tok = models.load(ModelConfig(name="smollm2-135m"))
    for task in tasks:
        pool = sample(load_split(task, "train"), 1000, 0)
        prompts = [x.prompt_ids for x in encode(pool, tok, 128, 16)]
        labels = [e.answer for e in pool]
        majority = collections.Counter(labels).most_common(1)[0][1] / len(labels)
        print(f"{task}: {len(set(labels))} classes, majority share {majority:.3f}")
        ks = (16, 32, 64)
        draws = {
            k: [
                torch.randperm(len(pool), generator=torch.Generator().manual_seed(s))[:k].tolist()
                for s in range(30)
            ]
            for k in ks
        }
        print("  random picks cover " + " / ".join(f"{covered(draws[k], labels):.1f}" for k in ks))
        for name, x in spaces(model, prompts, tok.pad_token_id).items():
            picks = {
                k: [
                    cluster_stratified(
                        x, x[:0], torch.zeros(len(pool)), k, torch.Generator().manual_seed(s)
                    )
                    for s in range(3)
                ]
                for k in ks
            }
            cover = " / ".join(f"{covered(picks[k], labels):.1f}" for k in ks)
            print(
                f"  {name:22s} kNN {knn_accuracy(x, labels):.3f}; typical picks cover {cover}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
