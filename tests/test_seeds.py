"""Seeded draws: one subset rule for the initial labels, the stop set and the candidates scored,
each from its own (seed, round, stream)."""

import torch

from star.seeds import INIT, STOP, SUBSAMPLE, derived_seed, generator, stop_set, subset


def test_a_subset_is_sorted_positions_of_a_seeded_permutation():
    expected = sorted(torch.randperm(10, generator=generator(0, 0, INIT))[:3].tolist())
    assert subset(10, 3, generator(0, 0, INIT)) == expected == [1, 3, 6]


def test_no_size_or_a_size_past_the_end_is_everything_in_order():
    assert subset(5, None, generator(0, 0, SUBSAMPLE)) == [0, 1, 2, 3, 4]
    assert subset(5, 9, generator(0, 0, SUBSAMPLE)) == [0, 1, 2, 3, 4]
    assert subset(5, 0, generator(0, 0, SUBSAMPLE)) == []


def test_streams_and_rounds_draw_independently():
    draws = {(r, s): subset(100, 5, generator(7, r, s)) for r in (0, 1) for s in (INIT, STOP)}
    assert len({tuple(d) for d in draws.values()}) == 4
    assert derived_seed(7, 1, STOP) == derived_seed(7, 1, STOP) != derived_seed(8, 1, STOP)


def test_the_stop_set_is_a_subset_of_ids_in_their_order():
    ids = [f"x{i}" for i in range(8)]
    assert stop_set(ids, 3, 0) == [ids[i] for i in subset(8, 3, generator(0, 0, STOP))]
    assert stop_set(ids, 3, 0) == ["x3", "x4", "x7"]
