"""Selectors: hand-computed picks on points whose clusters are obvious."""

import pytest
import torch

from star.method.selection import (
    cluster_stratified,
    kmeans,
    kmeanspp_seeds,
    top_k,
    unit_rows,
    weighted_kmeanspp,
)

# two tight groups on opposite sides (after centring and scaling: angles near 0 and near π)
EAST = [[1.0, 0.1], [1.0, 0.0], [1.0, -0.1]]
WEST = [[-1.0, 0.1], [-1.0, 0.0], [-1.0, -0.1]]
POINTS = torch.tensor(EAST + WEST)
NONE = torch.zeros(0, 2)


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_top_k_ranks_nan_last_and_ties_to_the_earlier_position_or_key():
    assert top_k(torch.tensor([0.1, 0.9, 0.9, float("nan")]), 4) == [1, 2, 0, 3]
    assert top_k(torch.tensor([0.1, 0.9, 0.9, float("nan")]), 2, ties=["a", "z", "b", "c"]) == [
        2,
        1,
    ]


def test_unit_rows_centres_then_scales():
    rows = unit_rows(torch.tensor([[3.0, 1.0], [1.0, 1.0]]))  # centred: (±1, 0)
    assert rows.tolist() == [[1.0, 0.0], [-1.0, 0.0]]


def test_kmeanspp_seeds_follow_weight_times_squared_distance():
    x = torch.tensor([[0.0], [1.0], [10.0]])
    # nothing to measure from: the highest weight first (ties: the first)
    assert kmeanspp_seeds(x, 1, g(), torch.tensor([1.0, 3.0, 3.0])) == [1]
    # fixed point at 0: D² = [0, 1, 100]; weight 0 on x=1 leaves only x=10, then x=1 by D² alone
    assert kmeanspp_seeds(x, 2, g(), torch.tensor([1.0, 0.0, 1.0]), fixed=x[:1]) == [2, 1]
    assert sorted(kmeanspp_seeds(x, 5, g())) == [0, 1, 2]  # at most n, each once


def test_kmeans_separates_the_groups():
    assign, centres = kmeans(unit_rows(POINTS), 2, g(3))
    assert len(set(assign[:3].tolist())) == 1 and len(set(assign[3:].tolist())) == 1
    assert assign[0] != assign[3]
    assert centres.shape == (2, 2)


@pytest.mark.parametrize("seed", range(5))
def test_cluster_stratified_takes_the_typical_one_of_each_group(seed):
    """Constant scores: the candidate nearest its cluster's centre (the middle one)."""
    picks = cluster_stratified(POINTS, NONE, torch.zeros(6), 2, g(seed))
    assert sorted(picks) == [1, 4]


def test_cluster_stratified_takes_the_highest_score_within_a_cluster():
    scores = torch.tensor([0.9, 0.0, 0.1, 0.0, 0.2, 0.3])
    assert sorted(cluster_stratified(POINTS, NONE, scores, 2, g())) == [0, 5]


@pytest.mark.parametrize("seed", range(5))
def test_cluster_stratified_fills_uncovered_clusters_first(seed):
    """One label in the east: m + k = 2 clusters, the west one is uncovered, so the one pick
    is the west's typical candidate although every east score is higher."""
    labelled = torch.tensor([[1.0, 0.05]])
    scores = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    assert cluster_stratified(POINTS, labelled, scores, 1, g(seed)) == [4]


def test_cluster_stratified_spreads_more_picks_than_clusters_round_robin():
    picks = cluster_stratified(POINTS, NONE, torch.tensor([6.0, 5, 4, 3, 2, 1]), 6, g())
    assert sorted(picks) == list(range(6)) and len(picks) == 6
    assert sorted(cluster_stratified(POINTS, NONE, torch.zeros(6), 10, g())) == list(range(6))


@pytest.mark.parametrize("seed", range(5))
def test_weighted_kmeanspp_never_repeats_a_labelled_point_before_the_rest(seed):
    """A candidate identical to a labelled example has D = 0: it is picked last."""
    labelled = POINTS[1:2]
    picks = weighted_kmeanspp(POINTS, labelled, torch.ones(6), 6, g(seed))
    assert sorted(picks) == list(range(6)) and picks[-1] == 1


def test_weighted_kmeanspp_starts_at_the_highest_score_without_labels():
    picks = weighted_kmeanspp(POINTS, NONE, torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0]), 2, g())
    assert picks[0] == 4
    assert picks == weighted_kmeanspp(POINTS, NONE, torch.tensor([0.0, 0, 0, 0, 1, 0]), 2, g())


def test_badge_starts_at_the_largest_norm_and_spreads():
    from star.method.selection import badge

    x = torch.tensor([[0.1, 0.0], [3.0, 0.0], [2.9, 0.1], [0.0, 2.0], [0.0, 0.1]])
    picks = badge(x, 3, torch.Generator().manual_seed(0))
    assert picks[0] == 1 and len(set(picks)) == 3
    assert 2 not in picks[:2]  # the near-duplicate of the first pick is all but never next
    assert picks == badge(x, 3, torch.Generator().manual_seed(0))
    assert sorted(badge(x, 9, torch.Generator().manual_seed(0))) == [0, 1, 2, 3, 4]
    assert badge(torch.zeros(3, 2), 2, torch.Generator().manual_seed(0)) == [0, 1]
