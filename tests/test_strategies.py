"""Top-k selection and the contract every registered strategy must meet."""

import pytest
import torch

from star.errors import EmptyPoolError
from star.strategies import STRATEGIES, Selected, Signals, select_top_k
from star.uncertainty import SequenceScores


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


def fake_signals(n: int, seed: int = 0, round: int = 0) -> Signals:
    tuned = SequenceScores(
        pe=torch.arange(n, dtype=torch.float),
        token_entropy=torch.arange(n, 0, -1, dtype=torch.float),
        bald=torch.arange(n, dtype=torch.float) % 3,
        n_tokens=torch.ones(n, dtype=torch.long),
    )
    base = SequenceScores(
        pe=torch.arange(n, dtype=torch.float) ** 2,
        token_entropy=torch.ones(n),
        bald=torch.zeros(n),
        n_tokens=torch.ones(n, dtype=torch.long),
    )
    return Signals(
        size=n,
        round=round,
        generator=torch.Generator().manual_seed(seed),
        tuned=lambda: tuned,
        base=lambda: base,
    )


def test_registry_holds_the_papers_strategies():
    assert list(STRATEGIES) == [
        "random",
        "pe",
        "pe-subtract",
        "pe-dynamic",
        "entropy",
        "entropy-subtract",
        "entropy-dynamic",
        "bald",
        "star",
    ]
    assert STRATEGIES["star"].defaults == {"uncertainty.mc_passes": 3, "train.b_decay": 0.5}


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


def test_measures_and_modes_compose():
    s = fake_signals(4)
    assert STRATEGIES["pe"].score(s).tolist() == [0, 1, 2, 3]
    assert STRATEGIES["entropy"].score(s).tolist() == [4, 3, 2, 1]
    assert STRATEGIES["bald"].score(s).tolist() == [0, 1, 2, 0]
    # N(pe tuned) = [0, 1/3, 2/3, 1]; N(pe base) = [0, 1/9, 4/9, 1]
    assert STRATEGIES["pe-subtract"].score(s).tolist() == pytest.approx([0, 2 / 9, 2 / 9, 0])
    # round 0: 0.1 · tuned + 0.9 · base
    assert STRATEGIES["pe-dynamic"].score(s).tolist() == pytest.approx(
        [0, 0.1 / 3 + 0.1, 0.2 / 3 + 0.4, 1]
    )
    late = fake_signals(4, round=20)
    assert STRATEGIES["pe-dynamic"].score(late).tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert torch.equal(STRATEGIES["star"].score(s), STRATEGIES["pe-dynamic"].score(s))
    # base token entropy is constant: it normalises to zeros and only the tuned term remains
    assert STRATEGIES["entropy-subtract"].score(s).tolist() == pytest.approx([1, 2 / 3, 1 / 3, 0])


def test_random_follows_its_seed():
    r = STRATEGIES["random"]
    assert not torch.equal(r.score(fake_signals(50, 0)), r.score(fake_signals(50, 1)))


def test_nan_scores_rank_last():
    chosen = select_top_k(["a", "b", "c"], torch.tensor([float("nan"), 1.0, 0.0]), k=2)
    assert [s.id for s in chosen] == ["b", "c"]
