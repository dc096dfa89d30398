"""Top-k selection and the contract every registered strategy must meet."""

import pytest
import torch

from star.errors import EmptyPoolError
from star.scoring import SequenceScores
from star.strategies import STRATEGIES, Selected, Signals, select_top_k


def test_select_top_k_takes_the_highest_scores():
    ids = ["e", "d", "c", "b", "a"]
    chosen = select_top_k(ids, torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3]), k=3)
    assert chosen == [
        Selected("d", pytest.approx(0.9), 0),
        Selected("b", pytest.approx(0.7), 1),
        Selected("c", pytest.approx(0.5), 2),
    ]


def test_ties_go_to_the_smaller_id():
    chosen = select_top_k(["z", "m", "a", "q"], torch.tensor([1.0, 2.0, 1.0, 1.0]), k=3)
    assert [s.id for s in chosen] == ["m", "a", "q"]


def test_k_larger_than_pool_takes_all_and_empty_pool_is_an_error():
    assert [s.id for s in select_top_k(["a", "b"], torch.tensor([0.0, 1.0]), k=5)] == ["b", "a"]
    with pytest.raises(EmptyPoolError):
        select_top_k([], torch.tensor([]), k=1)


def fake_signals(n: int, seed: int = 0) -> Signals:
    scores = SequenceScores(
        pe=torch.arange(n, dtype=torch.float),
        token_entropy=torch.arange(n, 0, -1, dtype=torch.float),
        n_tokens=torch.ones(n, dtype=torch.long),
    )
    return Signals(size=n, generator=torch.Generator().manual_seed(seed), tuned=lambda: scores)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract(name):
    """Every strategy: one finite score per candidate, the same for the same seed."""
    strategy = STRATEGIES[name]
    assert strategy.help
    a, b = strategy.score(fake_signals(7)), strategy.score(fake_signals(7))
    assert a.shape == (7,) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    ids = [f"id{i}" for i in range(7)]
    assert len({s.id for s in select_top_k(ids, a, 3)}) == 3


def test_pe_and_entropy_read_their_measure_and_random_follows_its_seed():
    assert STRATEGIES["pe"].score(fake_signals(4)).tolist() == [0, 1, 2, 3]
    assert STRATEGIES["entropy"].score(fake_signals(4)).tolist() == [4, 3, 2, 1]
    r = STRATEGIES["random"]
    assert not torch.equal(r.score(fake_signals(50, 0)), r.score(fake_signals(50, 1)))
