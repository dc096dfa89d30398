"""Stopping rules on hand-made predictions, with hand-computed figures."""

import math

import pytest
import torch

from star.config import LoopConfig
from star.method.stopping import (
    RULES,
    RoundPredictions,
    cohen_kappa,
    decide,
    decisions,
    from_rows,
    kappa_rule,
    normalised_entropy,
    to_rows,
    uncertainty_rule,
)


def rounds(*answers: str, u: float = 0.5) -> list[RoundPredictions]:
    return [RoundPredictions(list(a), [u] * len(a)) for a in answers]


def test_cohen_kappa_by_hand():
    # p_o = 3/4; p_e = 1/2 · 1/4 + 1/2 · 3/4 = 1/2; κ = (3/4 − 1/2) / (1 − 1/2)
    assert cohen_kappa("xxyy", "xyyy") == pytest.approx(0.5)
    # agreement no better than chance: p_o = 1/2 = p_e
    assert cohen_kappa("xyxy", "xxyy") == pytest.approx(0.0)
    assert cohen_kappa("xy", "yx") == pytest.approx(-1.0)
    assert cohen_kappa("xyz", "xyz") == 1.0
    assert cohen_kappa("xxx", "xxx") == 1.0  # p_e = 1: 0/0 read as perfect agreement
    with pytest.raises(ValueError):
        cohen_kappa("xy", "x")


def test_kappa_rule_averages_the_last_window_of_round_pairs():
    history = rounds("xxyy", "xyyy", "xyyy", "xyyy")  # κ = 0.5, 1, 1
    decision = kappa_rule(history)
    assert decision.figure == pytest.approx(2.5 / 3) and not decision.stop
    assert kappa_rule(history, threshold=0.8).stop
    assert kappa_rule(history, window=2).figure == 1.0 and kappa_rule(history, window=2).stop
    # the window is not full yet: its mean is shown, and it never stops
    early = kappa_rule(rounds("xxyy", "xxyy"))
    assert early.figure == 1.0 and not early.stop and "window not full" in early.detail
    assert kappa_rule(rounds("xy")).figure is None
    assert kappa_rule(rounds("xy")).line() == "stop: no (kappa: needs two trained rounds)"


def test_uncertainty_rule_reads_the_latest_round():
    history = [RoundPredictions("ab", [0.5, 0.7]), RoundPredictions("ab", [0.02, 0.06])]
    decision = uncertainty_rule(history)
    assert decision.figure == pytest.approx(0.04) and decision.stop
    assert not uncertainty_rule(history, threshold=0.03).stop
    assert not uncertainty_rule([]).stop and uncertainty_rule([]).figure is None


def test_normalised_entropy_of_option_distributions():
    probs = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.5, 0.25, 0.25]])
    expected = [math.log(2) / math.log(3), 0.0, 1.5 * math.log(2) / math.log(3)]
    assert normalised_entropy(probs).tolist() == pytest.approx(expected)
    assert normalised_entropy(torch.full((4,), 0.25)).item() == pytest.approx(1.0)
    assert normalised_entropy(torch.ones(2, 1)).tolist() == [0.0, 0.0]


def test_decisions_use_the_threshold_only_for_the_chosen_rule():
    history = rounds("xxyy", "xyyy", "xyyy", "xyyy", u=0.04)
    found = {d.rule: d for d in decisions(history, "kappa", 0.8)}
    assert found["kappa"].stop and found["kappa"].threshold == 0.8
    assert found["uncertainty"].threshold == 0.05 and found["uncertainty"].stop
    assert decide(history, "uncertainty", 0.01).stop is False
    with pytest.raises(ValueError, match="unknown stopping rule"):
        decide(history, "never", None)


def test_rows_round_trip():
    p = RoundPredictions(["a", "b"], [0.25, 1.0])
    rows = to_rows(["i1", "i2"], p)
    assert rows[0] == {"id": "i1", "answer": "a", "uncertainty": 0.25}
    assert from_rows(rows) == RoundPredictions(["a", "b"], [0.25, 1.0])


def test_the_configs_rule_names_are_the_registrys():
    """config does not import the method; the two lists are kept equal here."""
    choices = LoopConfig.__dataclass_fields__["stop"].metadata["choices"]
    assert tuple(choices) == tuple(RULES)
