"""Top-k selection and the contract every registered strategy must meet."""

import pytest
import torch

from star.errors import EmptyPoolError
from star.method.strategies import STRATEGIES, Selected, Signals, Strategy
from star.method.uncertainty import SequenceScores


def select_top_k(ids: list[str], scores: torch.Tensor, k: int) -> list[Selected]:
    """The top-k selector of a strategy whose scores are given."""
    return Strategy("given", "scores as given", lambda s: scores).choose(
        fake_signals(len(ids)), ids, k
    )


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
    prior = SequenceScores(
        pe=2 * torch.arange(n, dtype=torch.float),
        token_entropy=torch.zeros(n),
        bald=torch.zeros(n),
        n_tokens=torch.ones(n, dtype=torch.long),
    )
    return Signals(
        size=n,
        round=round,
        generator=torch.Generator().manual_seed(seed),
        tuned=lambda: tuned,
        base=lambda: base,
        base_prior=lambda: prior,
        embeddings=lambda: torch.randn(n, 8, generator=torch.Generator().manual_seed(seed)),
        labeled_embeddings=lambda: torch.randn(2, 8, generator=torch.Generator().manual_seed(9)),
        labels=lambda: label_passes(n),
        labeled_labels=lambda: torch.tensor([[0.45, 0.45, 0.1]]),
        answer_embeddings=lambda: (torch.eye(n, 8), torch.zeros(1, 8)),
        gradient_embeddings=lambda: (torch.arange(n * 4.0).reshape(n, 4), torch.zeros(0, 4)),
    )


def label_passes(n: int) -> torch.Tensor:
    """(K=2, n, 3) label distributions: candidate i's top two labels differ by i/(2n), and the
    two passes agree on all but the first candidate."""
    gap = torch.arange(n, dtype=torch.float) / (2 * n)  # (n,)
    p = torch.stack([0.5 + gap / 2, 0.5 - gap / 2, torch.zeros(n)], -1) * 0.9  # (n, 3)
    p[:, 2] = 0.1
    second = p.clone()
    second[0] = torch.tensor([0.1, 0.0, 0.9])
    return torch.stack([p, second])


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
        "star-authors",
        "star-ifd",
        "typical",
        "pe-cluster",
        "pe-kmeanspp",
        "entropy-cluster",
        "entropy-kmeanspp",
        "star-cluster",
        "star-kmeanspp",
        "star-ifd-cluster",
        "star-ifd-kmeanspp",
        *(
            f"{m}{v}"
            for m in ("least-confidence", "margin", "label-entropy", "label-bald")
            for v in ("", "-cluster", "-kmeanspp")
        ),
        "cal",
        "badge",
    ]
    assert STRATEGIES["star"].defaults == {"uncertainty.mc_passes": 3, "train.b_decay": 0.5}
    assert STRATEGIES["star-cluster"].defaults == {
        "uncertainty.mc_passes": 3,
        "train.b_decay": 0.5,
        "uncertainty.target": "generated",
        "uncertainty.length_norm": True,
        "loop.init_by": "strategy",
    }
    assert STRATEGIES["pe-kmeanspp"].selector == "kmeanspp"


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract(name):
    """Every strategy: one finite score per candidate, the same for the same seed."""
    strategy = STRATEGIES[name]
    assert strategy.help
    a, b = strategy.score(fake_signals(7)), strategy.score(fake_signals(7))
    assert a.shape == (7,) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    ids = [f"id{i}" for i in range(7)]
    chosen = strategy.choose(fake_signals(7), ids, 3)
    assert len({s.id for s in chosen}) == 3 and [s.rank for s in chosen] == [0, 1, 2]
    assert chosen == strategy.choose(fake_signals(7), ids, 3)  # deterministic per seed


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
    # the authors' formula: raw tuned pe [0, 1, 2, 3] · 0.1 + 0.9 · N(base) [0, 1/9, 4/9, 1]
    assert STRATEGIES["star-authors"].score(s).tolist() == pytest.approx([0, 0.2, 0.6, 1.2])
    # IFD base term: base pe [0, 1, 4, 9] − prompt-free pe [0, 2, 4, 6] = [0, −1, 0, 3],
    # normalised [1/4, 0, 1/4, 1]; round 0: 0.1 · N(tuned) + 0.9 · that
    assert STRATEGIES["star-ifd"].score(s).tolist() == pytest.approx(
        [0.225, 0.1 / 3, 0.2 / 3 + 0.225, 1]
    )
    # a selector changes the picks, never the scores
    assert torch.equal(STRATEGIES["pe-cluster"].score(s), STRATEGIES["pe"].score(s))
    assert STRATEGIES["typical"].score(s).tolist() == [0, 0, 0, 0]


def test_top_selector_keeps_the_id_tie_rule():
    """Equal PE everywhere: the two smallest ids, not the first two positions."""
    flat = SequenceScores(torch.ones(4), torch.ones(4), torch.zeros(4), torch.ones(4))
    s = Signals(4, 1, torch.Generator(), tuned=lambda: flat, base=lambda: flat)
    chosen = STRATEGIES["pe"].choose(s, ["d", "c", "b", "a"], 2)
    assert [(c.id, c.score, c.rank) for c in chosen] == [("a", 1.0, 0), ("b", 1.0, 1)]


def test_spread_selector_picks_one_per_cluster():
    """Two tight groups, nothing labelled, k = 2: one pick from each, the best-scored there."""
    groups = torch.tensor([[1.0, 0.1], [1.0, 0.0], [1.0, -0.1], [-1.0, 0.1], [-1.0, 0.0]])
    scores = SequenceScores(
        torch.tensor([0.0, 0.2, 0.9, 0.5, 0.1]), torch.zeros(5), torch.zeros(5), torch.ones(5)
    )
    s = Signals(
        size=5,
        round=1,
        generator=torch.Generator().manual_seed(0),
        tuned=lambda: scores,
        base=lambda: scores,
        embeddings=lambda: groups,
        labeled_embeddings=lambda: torch.zeros(0, 2),
    )
    chosen = STRATEGIES["pe-cluster"].choose(s, ["a", "b", "c", "d", "e"], 2)
    assert sorted(c.id for c in chosen) == ["c", "d"]


def test_random_follows_its_seed():
    r = STRATEGIES["random"]
    assert not torch.equal(r.score(fake_signals(50, 0)), r.score(fake_signals(50, 1)))


def test_nan_scores_rank_last():
    chosen = select_top_k(["a", "b", "c"], torch.tensor([float("nan"), 1.0, 0.0]), k=2)
    assert [s.id for s in chosen] == ["b", "c"]


def test_the_label_measures_read_the_label_distribution():
    s = fake_signals(4)
    # passes averaged: candidate 0's mean is [0.275, 0.225, 0.5]; the others' top-two gap i/8·0.9
    assert STRATEGIES["margin"].score(s).tolist() == pytest.approx(
        [-(0.5 - 0.275), -0.9 / 8, -0.9 * 2 / 8, -0.9 * 3 / 8]
    )
    assert torch.argsort(STRATEGIES["label-entropy"].score(s), descending=True).tolist()[1:] == [
        1,
        2,
        3,
    ]  # the flatter, the sooner
    assert STRATEGIES["label-bald"].score(s)[1:].tolist() == pytest.approx([0, 0, 0])
    assert STRATEGIES["label-bald"].score(s)[0] > 0.1  # only candidate 0's passes disagree
    assert STRATEGIES["label-bald"].min_passes == STRATEGIES["bald"].min_passes == 2
    assert STRATEGIES["margin-kmeanspp"].defaults == {"loop.init_by": "strategy"}


def test_the_spreading_selectors_measure_the_chosen_embedding():
    import dataclasses

    s = fake_signals(5)
    assert torch.equal(s.vectors()[0], s.embeddings())
    assert torch.equal(dataclasses.replace(s, embedding="answer").vectors()[0], torch.eye(5, 8))
    gradient = dataclasses.replace(s, embedding="gradient")
    assert gradient.vectors()[0].shape == (5, 4)
    assert STRATEGIES["badge"].defaults == {"uncertainty.embedding": "gradient"}
    picks = STRATEGIES["badge"].choose(gradient, [f"id{i}" for i in range(5)], 2)
    assert picks[0].id == "id4"  # the largest gradient norm first


def test_cal_ranks_the_candidates_predicted_unlike_their_labelled_neighbour():
    # one labelled example predicted [0.45, 0.45, 0.1]: candidate 0's mean passes differ most
    scores = STRATEGIES["cal"].score(fake_signals(4))
    assert int(scores.argmax()) == 0 and (scores >= 0).all()
