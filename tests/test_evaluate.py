"""Confidence read off generation: label renormalisation, answer-token probability, and batched
generation equal to one-at-a-time generation."""

import math

import pytest
import torch

from star.data import encode
from star.evaluate import LabelTokens, answer_confidence, label_confidence
from star.generate import Generated, generate
from star.tasks import TASKS, load_split


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_label_tokens_keep_single_token_spellings(tiny):
    _, tok = tiny
    obqa = LabelTokens.build(tok, ("A", "B", "C", "D"))
    plain = [ids(tok, c)[0] for c in "ABCD"]
    spaced = [ids(tok, " " + c)[0] for c in "ABCD"]
    assert obqa.watched == plain + spaced  # capitalised spellings repeat these and are skipped
    assert obqa.columns(spaced[2]) == slice(4, 8) and obqa.columns(12345) is None
    boolq = LabelTokens.build(tok, ("true", "false"))
    assert len(boolq.watched) == 8 and boolq.columns(ids(tok, " True")[0]) == slice(6, 8)


def generated(text_pieces, token_ids, chosen_logp, watched_logits):
    offsets = [sum(len(p) for p in text_pieces[:i]) for i in range(len(text_pieces))]
    return Generated(
        token_ids, "".join(text_pieces), offsets, torch.tensor(chosen_logp), watched_logits
    )


def test_label_confidence_renormalises_in_the_generated_spelling(tiny):
    _, tok = tiny
    table = LabelTokens.build(tok, TASKS["obqa"].labels)
    logits = torch.zeros(2, 8)
    logits[0, 4:8] = torch.log(torch.tensor([1.0, 3.0, 1.0, 1.0]))  # " A".." D" at step 0
    gen = generated([" B", "."], [ids(tok, " B")[0], ids(tok, ".")[0]], [-0.1, -0.2], logits)
    assert label_confidence(TASKS["obqa"], table, gen) == pytest.approx(0.5)


def test_label_confidence_without_a_label_takes_the_best_first_step_label(tiny):
    _, tok = tiny
    table = LabelTokens.build(tok, TASKS["obqa"].labels)
    logits = torch.zeros(1, 8)
    logits[0, :4] = torch.log(torch.tensor([1.0, 1.0, 2.0, 4.0]))
    gen = generated(["hmm"], ids(tok, "hmm")[:1], [-0.5], logits)
    assert label_confidence(TASKS["obqa"], table, gen) == pytest.approx(0.5)


def test_answer_confidence_is_the_probability_of_the_answer_tokens():
    pieces = ["The", " final", " answer", " is", " ", "4", "2"]
    logp = [-0.1, -0.1, -0.1, -0.1, -0.3, -0.2, -0.4]
    gen = generated(pieces, list(range(7)), logp, torch.zeros(7, 0))
    assert answer_confidence(TASKS["gsm8k"], gen) == pytest.approx(math.exp(-0.6))
    assert answer_confidence(TASKS["gsm8k"], generated(["no"], [0], [-1.0], None)) == 0.0


def test_batched_generation_equals_one_at_a_time(tiny):
    model, tok = tiny
    prompts = encode(load_split("obqa", "test")[:3] + load_split("gsm8k", "test")[:2], tok, 64, 8)
    batched = generate(model, tok, prompts, max_new_tokens=6, batch_size=5)
    for prompt, together in zip(prompts, batched, strict=True):
        (alone,) = generate(model, tok, [prompt], max_new_tokens=6, batch_size=1)
        assert together.token_ids == alone.token_ids
        assert torch.allclose(together.chosen_logp, alone.chosen_logp, atol=1e-4)
        assert together.text == tok.decode(alone.token_ids, skip_special_tokens=True)
