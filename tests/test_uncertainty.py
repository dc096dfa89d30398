"""Uncertainty math on small explicit tensors with hand-computed values (no model)."""

import math

import pytest
import torch

from star.method.uncertainty import (
    contrastive_divergence,
    dynamic_mix,
    dynamic_weight,
    flatten_masked,
    gradient_embedding,
    instruction_difficulty,
    label_bald,
    label_entropy,
    least_confidence,
    margin,
    normalise,
    reduce_by_row,
    same_width,
    subtract,
    token_mutual_information,
    token_nll_and_entropy,
)

LN2, LN5 = math.log(2), math.log(5)
PEAKED = [0.5, 0.125, 0.125, 0.125, 0.125]  # H = 2 ln 2
UNIFORM = [0.2] * 5  # H = ln 5
STEP = [0.25, 0.25, 0.25, 0.125, 0.125]  # H = 2.25 ln 2


def logits_of(*rows):
    return torch.log(torch.tensor(rows))


def case():
    """2 examples × 3 answer positions × 5 words; example 2's last position is padding."""
    logits = torch.stack(
        [logits_of(PEAKED, UNIFORM, STEP), logits_of(UNIFORM, PEAKED, UNIFORM) * 0 + 50.0]
    )  # (2, 3, 5)
    logits[1, :2] = logits_of(UNIFORM, PEAKED)
    logits[1, 2] = torch.tensor([90.0, -90.0, 3.0, 0.0, 1.0])  # garbage at the padded position
    targets = torch.tensor([[0, 4, 3], [2, 1, 0]])  # (2, 3)
    mask = torch.tensor([[True, True, True], [True, True, False]])  # (2, 3)
    return logits, targets, mask


def test_pe_and_me_hand_computed_with_padding_masked():
    logits, targets, mask = case()
    flat_logits, rows = flatten_masked(logits, mask)  # (5, 5), (5,)
    flat_targets, _ = flatten_masked(targets, mask)
    nll, ent = token_nll_and_entropy(flat_logits, flat_targets)
    pe = reduce_by_row(nll, rows, 2)
    me = reduce_by_row(ent, rows, 2)
    assert pe.tolist() == pytest.approx([LN2 + LN5 + 3 * LN2, LN5 + 3 * LN2], abs=1e-5)
    assert me.tolist() == pytest.approx([2 * LN2 + LN5 + 2.25 * LN2, LN5 + 2 * LN2], abs=1e-5)
    mean_pe = reduce_by_row(nll, rows, 2, mean=True)
    assert mean_pe.tolist() == pytest.approx([(4 * LN2 + LN5) / 3, (LN5 + 3 * LN2) / 2], abs=1e-5)


def test_bald_hand_computed():
    """K = 2 passes that agree everywhere but at example 1's first token (and the pad)."""
    logits, _, mask = case()
    passes = torch.stack([logits, logits.clone()])  # (2, 2, 3, 5)
    passes[1, 0, 0] = logits_of([0.125, 0.5, 0.125, 0.125, 0.125])[0]
    passes[1, 1, 2] = torch.tensor([-90.0, 90.0, 0.0, 0.0, 0.0])  # padding: must not count
    flat = passes[:, mask]  # (2, 5, 5)
    _, rows = flatten_masked(logits, mask)
    bald = reduce_by_row(token_mutual_information(flat), rows, 2)
    # mean p = [.3125, .3125, .125, .125, .125]; H(mean) − mean H = 0.625 ln 3.2 − 0.875 ln 2
    assert bald.tolist() == pytest.approx([0.625 * math.log(3.2) - 0.875 * LN2, 0.0], abs=1e-6)


def test_bald_is_zero_for_identical_passes():
    logits = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    mi = token_mutual_information(torch.stack([logits] * 3))
    assert torch.allclose(mi, torch.zeros(4), atol=1e-6)  # fp32 rounding only


def test_normalise():
    assert normalise(torch.tensor([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert normalise(torch.tensor([7.0, 7.0, 7.0])).tolist() == [0.0, 0.0, 0.0]


def test_dynamic_weights_and_mixing():
    assert dynamic_weight(0, 0.1, 0.1) == pytest.approx(0.1)
    assert dynamic_weight(8, 0.1, 0.1) == pytest.approx(0.9)
    assert dynamic_weight(12, 0.1, 0.1) == 1.0
    tuned, base = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([20.0, 10.0, 0.0])
    assert dynamic_mix(tuned, base, dynamic_weight(0, 0.1, 0.1)).tolist() == pytest.approx(
        [0.9, 0.5, 0.1]
    )
    assert dynamic_mix(tuned, base, dynamic_weight(8, 0.1, 0.1)).tolist() == pytest.approx(
        [0.1, 0.5, 0.9]
    )


def test_subtract_sign():
    """Positive where the tuned model is more uncertain than the base model, relatively."""
    tuned, base = torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])
    assert subtract(tuned, base).tolist() == pytest.approx([1.0, -0.5, -0.5])


def test_instruction_difficulty_cancels_what_the_answer_form_costs():
    """Two answers of very different prior cost (a long number, a short word) that the prompt
    helps equally get the same difficulty; the one the prompt helps less ranks higher."""
    conditional = torch.tensor([9.0, 2.0, 3.0])
    unconditional = torch.tensor([10.0, 3.0, 3.5])
    assert instruction_difficulty(conditional, unconditional).tolist() == [-1.0, -1.0, -0.5]


PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0]])  # last row: 2 labels


def test_least_confidence_margin_and_entropy_by_hand():
    assert least_confidence(PROBS).tolist() == pytest.approx([0.3, 0.6, 0.5])
    assert margin(PROBS).tolist() == pytest.approx([0.5, 0.05, 0.0])
    h = [-(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)), 0, math.log(2)]
    h[1] = -(0.4 * math.log(0.4) + 0.35 * math.log(0.35) + 0.25 * math.log(0.25))
    assert label_entropy(PROBS).tolist() == pytest.approx(h)  # a padded 0 adds nothing


def test_the_measures_rank_as_the_literature_does():
    """All three put the flattest row first; margin then the exact two-way tie, entropy the row
    whose doubt spreads over three labels (it counts the tail, margin does not)."""
    order = lambda u: torch.argsort(u, descending=True).tolist()  # noqa: E731
    assert order(least_confidence(PROBS)) == [1, 2, 0]
    assert order(-margin(PROBS)) == [2, 1, 0]
    assert order(label_entropy(PROBS)) == [1, 0, 2]


def test_label_bald_is_disagreement_between_passes():
    sure_but_split = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (K=2, n=1, L=2)
    unsure_alike = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]])
    assert label_bald(sure_but_split).tolist() == pytest.approx([math.log(2)])
    assert label_bald(unsure_alike).tolist() == pytest.approx([0.0])
    one_label = torch.tensor([[1.0], [0.2]])
    assert margin(one_label).tolist() == pytest.approx([1.0, 0.2])


def test_the_gradient_embedding_is_the_residual_times_the_state():
    """(p − onehot(ŷ)) ⊗ h: ŷ = label 0 here, so the residual is (−0.3, 0.3)."""
    g = gradient_embedding(torch.tensor([[0.7, 0.3]]), torch.tensor([[1.0, 2.0]]))
    assert g[0].tolist() == pytest.approx([-0.3, -0.6, 0.3, 0.6])
    sure = gradient_embedding(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 2.0]]))
    assert sure.abs().sum() == 0  # a certain prediction has nothing to learn


def test_cal_scores_a_candidate_by_its_labelled_neighbours_predictions():
    """KL(p_neighbour ‖ p_candidate), mean over the nearest labelled: a candidate predicted as
    its neighbours are scores 0; one that disagrees, KL by hand."""
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    labelled = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    x, lx = torch.tensor([[0.0], [0.1]]), torch.tensor([[0.0], [5.0]])
    got = contrastive_divergence(probs, labelled, x, lx, neighbours=1)
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert got.tolist() == pytest.approx([kl, 0.0])
    both = contrastive_divergence(probs, labelled, x, lx, neighbours=10)  # k capped at m = 2
    second = 0.2 * math.log(0.2 / 0.5) + 0.8 * math.log(0.8 / 0.5)
    assert both[0].item() == pytest.approx((kl + second) / 2)
    assert contrastive_divergence(probs, labelled[:0], x, lx[:0]).tolist() == [0.0, 0.0]


def test_label_sets_of_different_sizes_are_padded_with_zero_probability():
    a, b = same_width(torch.tensor([[0.5, 0.25]]), torch.tensor([[0.25, 0.25, 0.5]]))
    assert a.tolist() == [[0.5, 0.25, 0.0]] and b.tolist() == [[0.25, 0.25, 0.5]]
