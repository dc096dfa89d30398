"""Which candidates to label, given their scores and embeddings: pure, seeded tensor functions.

A strategy is a measure × a mode × a selector (method.md §5). The selector turns (n,) scores
into k picks:
  - `top_k`: the k highest scores (the paper);
  - `cluster_stratified`: spread the budget over k-means clusters of the embeddings, the
    clusters the labelled set does not cover first, the best-scored candidate in each;
  - `weighted_kmeanspp`: k-means++ seeding with each candidate's squared distance to the
    nearest labelled or already picked example weighted by its score (BADGE's sampling,
    Ash et al. 2020, on any embedding);
  - `badge`: BADGE itself, k-means++ seeding on raw gradient embeddings (their norm is the
    uncertainty, so no score and no normalising).
Spreading the budget is what the low-budget literature finds missing from uncertainty alone
(TypiClust, Hacohen et al. 2022; Cluster-Margin, Citovsky et al. 2021): top-k spends a batch on
near-duplicates of one hard kind. Every function is deterministic given its generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

KMEANS_ITERATIONS = 30


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows centred on their mean, then scaled to length 1 (fp32): squared distances are
    2 − 2·cosine. Centring matters: an LM's pooled states share one dominant direction
    (anisotropy, Ethayarajh 2019) and a prompt template adds another. (n, d) -> (n, d)"""
    x = x.float()
    x = x - x.mean(0, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def squared_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(n, d), (c, d) -> (n, c) squared Euclidean distances, ≥ 0."""
    d = (x * x).sum(1, keepdim=True) - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return d.clamp_min(0.0)


def kmeanspp_seeds(
    x: torch.Tensor,
    k: int,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
    fixed: torch.Tensor | None = None,
) -> list[int]:
    """k-means++ seeding: each next seed drawn with probability ∝ weight · D², D the distance to
    the nearest seed so far (or to a `fixed` point). The first seed, when nothing is fixed, is
    the highest weight (ties: the first), or uniform without weights.

    x: (n, d); weights: (n,) ≥ 0 or None (all 1); fixed: (m, d) points that count as seeds but
    are not returned. Returns k distinct positions in pick order (fewer if n < k).
    """
    n = x.shape[0]
    w = torch.ones(n) if weights is None else weights.float().clamp_min(0.0)
    picks: list[int] = []
    nearest = torch.full((n,), float("inf"))
    if fixed is not None and len(fixed):
        nearest = squared_distances(x, fixed).min(1).values
    taken = torch.zeros(n, dtype=torch.bool)
    while len(picks) < min(k, n):
        if torch.isinf(nearest).all():  # nothing to measure distance from yet
            if weights is None:
                i = int(torch.randint(n, (1,), generator=generator))
            else:
                i = int(torch.argmax(w))
        else:
            p = torch.where(taken, 0.0, w * torch.nan_to_num(nearest, posinf=0.0))
            if p.sum() <= 0:  # every weight zero or every point on a seed: fall back to D² alone
                p = torch.where(taken, 0.0, torch.nan_to_num(nearest, posinf=0.0))
            if p.sum() <= 0:  # all remaining points coincide with seeds: first free one
                i = int(torch.nonzero(~taken)[0])
            else:
                i = int(torch.multinomial(p.double(), 1, generator=generator))
        picks.append(i)
        taken[i] = True
        nearest = torch.minimum(nearest, squared_distances(x, x[i : i + 1])[:, 0])
    return picks


def kmeans(
    x: torch.Tensor, k: int, generator: torch.Generator, iterations: int = KMEANS_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from k-means++ seeds; a cluster that empties keeps its centre.

    x: (n, d) fp32; returns assignment (n,) in [0, k) and centres (k, d); k ≤ n.
    """
    centres = x[kmeanspp_seeds(x, k, generator)].clone()
    assign = squared_distances(x, centres).argmin(1)
    for _ in range(iterations):
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        new = squared_distances(x, centres).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    return assign, centres


def top_k(scores: torch.Tensor, k: int, ties: Sequence | None = None) -> list[int]:
    """Positions of the k highest scores; NaN last; equal scores in order of `ties` (n
    sortable keys, e.g. ids), else of position. (n,) -> min(k, n) positions"""
    values = torch.nan_to_num(scores.double(), nan=float("-inf")).tolist()
    key = list(range(len(values))) if ties is None else ties
    return sorted(range(len(values)), key=lambda i: (-values[i], key[i]))[:k]


def cluster_stratified(
    x: torch.Tensor,
    labeled: torch.Tensor,
    scores: torch.Tensor,
    k: int,
    generator: torch.Generator,
) -> list[int]:
    """k picks spread over clusters: k-means on labelled + candidates into m + k clusters
    (m labelled, as TypiClust), then clusters in order of (fewest labelled, most candidates),
    one pick from each in turn: its highest score, ties to the candidate nearest the centre.

    With constant scores this picks the most typical candidate of each uncovered cluster.
    x: (n, d) candidate embeddings; labeled: (m, d); scores: (n,). Returns min(k, n) positions,
    in pick order.
    """
    n, m = x.shape[0], labeled.shape[0]
    k = min(k, n)
    if k == 0:
        return []
    points = unit_rows(torch.cat([labeled, x]))
    clusters = min(m + k, m + n)
    assign, centres = kmeans(points, clusters, generator)
    covered = torch.bincount(assign[:m], minlength=clusters)
    mine = assign[m:]  # (n,) the candidates' clusters
    near = squared_distances(points[m:], centres).gather(1, mine[:, None])[:, 0]  # (n,)
    size = torch.bincount(mine, minlength=clusters)
    values = torch.nan_to_num(scores.double(), nan=float("-inf"))
    queues = {
        c: sorted(
            torch.nonzero(mine == c)[:, 0].tolist(),
            key=lambda i: (-float(values[i]), float(near[i]), i),
        )
        for c in range(clusters)
    }
    filled = [c for c in range(clusters) if size[c] > 0]
    order = sorted(filled, key=lambda c: (int(covered[c]), -int(size[c]), c))
    picks: list[int] = []
    while len(picks) < k:
        for c in order:
            if queues[c] and len(picks) < k:
                picks.append(queues[c].pop(0))
    return picks


def weighted_kmeanspp(
    x: torch.Tensor,
    labeled: torch.Tensor,
    scores: torch.Tensor,
    k: int,
    generator: torch.Generator,
) -> list[int]:
    """k picks by k-means++ sampling ∝ (normalised score + ε) · D², D the cosine-space distance
    to the nearest labelled or picked example: uncertain *and* unlike what is labelled.

    ε = 0.05 keeps a zero-score candidate reachable. x: (n, d); labeled: (m, d); scores: (n,).
    """
    points = unit_rows(torch.cat([labeled, x]))
    values = torch.nan_to_num(scores.float(), nan=float(torch.nan_to_num(scores).min()))
    low, high = values.min(), values.max()
    weight = (values - low) / (high - low) if high > low else torch.ones_like(values)
    m = labeled.shape[0]
    return kmeanspp_seeds(points[m:], k, generator, weight + 0.05, fixed=points[:m])


def badge(x: torch.Tensor, k: int, generator: torch.Generator) -> list[int]:
    """BADGE's batch (Ash et al. 2020): k-means++ seeding on the raw embeddings, the first pick
    the largest norm, each next drawn ∝ D² to the nearest pick so far.

    x: (n, d) gradient embeddings; returns min(k, n) distinct positions in pick order.
    """
    x = x.float()
    n = x.shape[0]
    if min(k, n) == 0:
        return []
    picks = [int(torch.argmax(x.norm(dim=1)))]
    nearest = squared_distances(x, x[picks])[:, 0]  # (n,)
    while len(picks) < min(k, n):
        p = nearest.clone()
        p[picks] = 0.0
        if p.sum() > 0:
            i = int(torch.multinomial(p.double(), 1, generator=generator))
        else:  # every point on a pick already: the first free one
            i = next(j for j in range(n) if j not in picks)
        picks.append(i)
        nearest = torch.minimum(nearest, squared_distances(x, x[i : i + 1])[:, 0])
    return picks
