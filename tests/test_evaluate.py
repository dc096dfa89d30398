"""Confidence read off generation: label renormalisation, answer-token probability, and batched
generation equal to one-at-a-time generation."""

import dataclasses
import math

import pytest
import torch

from star.engine.answers import label_free_answers
from star.engine.batching import collate, encode
from star.engine.evaluate import LabelTokens, answer_confidence, evaluate_options, label_confidence
from star.engine.generate import Generated, answer_length, generate, greedy
from star.engine.options import option_ids
from star.method.stopping import normalised_entropy
from star.tasks.registry import TASKS, load_split
from star.tasks.spec import Example


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


def test_generation_records_no_autograd_graph(tiny):
    """Results that held a graph kept every batch's activations alive (22 GB for 400 answers),
    even with weights that require grad, as a freshly loaded model's do."""
    model, tok = tiny
    prompts = encode(load_split("obqa", "test")[:2], tok, 64, 8)
    was = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(True)
    try:
        out = generate(model, tok, prompts, max_new_tokens=3, batch_size=2)
    finally:
        for p, w in zip(model.parameters(), was, strict=True):
            p.requires_grad_(w)
    assert not any(g.chosen_logp.requires_grad for g in out)


def test_greedy_matches_hf_generate(tiny):
    model, tok = tiny
    prompts = encode(load_split("obqa", "test")[:4], tok, 64, 8)
    batch = collate(prompts, tok.pad_token_id, padding_side="left")
    reference = model.generate(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        max_new_tokens=5,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=tok.pad_token_id,
    )[:, batch.input_ids.shape[1] :]
    tokens, chosen, _ = greedy(
        model, batch.input_ids, batch.attention_mask, 5, None, torch.tensor([], dtype=torch.long)
    )
    assert torch.equal(tokens, reference)
    assert (chosen <= 0).all()


def test_greedy_drops_finished_rows_without_changing_the_others(tiny):
    model, tok = tiny
    prompts = encode(load_split("obqa", "test")[:4], tok, 64, 8)
    batch = collate(prompts, tok.pad_token_id, padding_side="left")
    watch = torch.tensor([5, 7])
    full = greedy(model, batch.input_ids, batch.attention_mask, 6, None, watch)
    stop = int(full[0][1, 2])  # pretend row 1's third token is EOS: row 1 leaves after step 2
    cut = greedy(model, batch.input_ids, batch.attention_mask, 6, stop, watch)
    steps = []
    for row in range(4):
        ends = (full[0][row] == stop).nonzero()
        n = int(ends[0]) + 1 if len(ends) else 6  # steps this row really made
        steps.append(n)
        assert torch.equal(cut[0][row, :n], full[0][row, :n])
        assert (cut[0][row, n:] == stop).all()
        assert torch.allclose(cut[1][row, :n], full[1][row, :n], atol=1e-5)
        assert torch.allclose(cut[2][row, :n], full[2][row, :n], atol=1e-4)
    assert steps[1] <= 3 and max(steps) == 6  # one row left early, another went on


def test_bucketed_prefill_gives_the_same_tokens_as_one_forward(tiny):
    model, tok = tiny
    prompts = encode(load_split("obqa", "test")[:3] + load_split("gsm8k", "test")[:3], tok, 64, 8)
    batch = collate(prompts, tok.pad_token_id, padding_side="left")
    none = torch.tensor([], dtype=torch.long)
    whole = greedy(model, batch.input_ids, batch.attention_mask, 5, None, none, 10**6)
    buckets = greedy(model, batch.input_ids, batch.attention_mask, 5, None, none, 130)
    assert torch.equal(whole[0], buckets[0])
    assert torch.allclose(whole[1], buckets[1], atol=1e-5)


def reference_option_logprob(model, prompt_ids, option_ids):
    """log p(option | prompt) from one full-logits forward of prompt + option, alone."""
    ids = torch.tensor([prompt_ids + option_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)  # (T, V)
    start = len(prompt_ids) - 1  # the position that predicts the option's first token
    return sum(logp[start + t, o].item() for t, o in enumerate(option_ids))


@pytest.mark.parametrize("task,budget", [("banking77", 512), ("trec", 512), ("banking77", 40)])
def test_options_mode_matches_one_option_at_a_time(tiny, task, budget):
    """Accuracy and confidences of `--eval-mode options` against an independent reference:
    full logits, one (prompt, option) pair at a time, renormalised over the label set. A small
    budget puts prompts and option continuations in many small batches."""
    model, tok = tiny
    spec = TASKS[task]
    examples = load_split(task, "test")[:4]
    labels = sorted(set(spec.labels[:8]) | {e.answer for e in examples})  # kept small
    spec = dataclasses.replace(spec, labels=tuple(labels))
    prompts = encode(examples, tok, 64, 16)
    predictions = evaluate_options(model, tok, spec, examples, prompts, budget)
    options = option_ids(tok, spec, spec.labels)
    assert max(len(o) for o in options) > 1 if task == "banking77" else True
    for example, prompt, p in zip(examples, prompts, predictions, strict=True):
        logp = [reference_option_logprob(model, prompt.prompt_ids, o) for o in options]
        probs = torch.softmax(torch.tensor(logp), -1)
        best = int(probs.argmax())
        assert p.predicted == spec.labels[best]
        assert p.correct == (spec.labels[best] == example.answer)
        assert p.confidence == pytest.approx(probs[best].item(), abs=1e-4)


def test_options_mode_uses_each_rows_own_choices(tiny):
    model, tok = tiny
    spec = TASKS["obqa"]
    rows = [
        Example("a", "Pick: ", " x", "x", ("x", "yy")),
        Example("b", "Or: ", " c", "c", ("c", "dd", "e")),
    ]
    prompts = encode(rows, tok, 64, 8)
    predictions = evaluate_options(model, tok, spec, rows, prompts, 512)
    for row, prompt, p in zip(rows, prompts, predictions, strict=True):
        options = option_ids(tok, spec, row.choices)
        logp = [reference_option_logprob(model, prompt.prompt_ids, o) for o in options]
        probs = torch.softmax(torch.tensor(logp), -1)
        assert p.predicted == row.choices[int(probs.argmax())]
        assert p.confidence == pytest.approx(probs.max().item(), abs=1e-4)


def test_label_free_answers_mix_closed_and_free_items_in_order(tiny):
    """One rule for runs, stop sets and projects: a closed item's answer is its most likely
    option (confidence its probability, uncertainty the options' normalised entropy), a free
    item's the greedy answer (uncertainty 1 − its probability)."""
    model, tok = tiny
    spec = TASKS["obqa"]
    rows = [
        Example("a", "Pick: ", " x", "x", ("x", "yy")),
        Example("b", "Say something: ", " z", "z"),
        Example("c", "Or: ", " c", "c", ("c", "dd", "e")),
    ]
    prompts = encode(rows, tok, 64, 8)
    options = [(r.choices, option_ids(tok, spec, r.choices)) if r.choices else None for r in rows]
    got = label_free_answers(model, tok, prompts, options, 5, 2, 512)
    for row, prompt, answer in zip(rows, prompts, got, strict=True):
        if row.choices:
            labels, spelled = row.choices, option_ids(tok, spec, row.choices)
            logp = [reference_option_logprob(model, prompt.prompt_ids, o) for o in spelled]
            probs = torch.softmax(torch.tensor(logp), -1)
            best = int(probs.argmax())
            assert (answer.text, answer.token_ids) == (labels[best], spelled[best])
            assert answer.confidence == pytest.approx(probs[best].item(), abs=1e-4)
            assert answer.uncertainty == pytest.approx(normalised_entropy(probs).item(), abs=1e-4)
        else:
            (alone,) = generate(model, tok, [prompt], max_new_tokens=5, batch_size=1)
            assert (answer.text, answer.token_ids) == (alone.text.strip(), alone.token_ids)
            sure = math.exp(alone.chosen_logp.sum().item())
            assert answer.confidence == pytest.approx(sure, rel=1e-4)
            assert answer.uncertainty == pytest.approx(1 - sure, abs=1e-4)


def test_option_ids_end_with_eos_only_when_one_is_a_prefix_of_another(tiny):
    _, tok = tiny
    spec = TASKS["trec"]
    plain = option_ids(tok, spec, ("human", "location"))
    assert plain == [ids(tok, " human"), ids(tok, " location")]
    nested = option_ids(tok, spec, ("card", "card arrival"))
    assert nested == [
        ids(tok, " card") + [tok.eos_token_id],
        ids(tok, " card arrival") + [tok.eos_token_id],
    ]


@pytest.mark.parametrize(
    "longest, expected",
    [(None, 64), (1, 2), (2, 4), (10, 16), (42, 64), (60, 64)],
)
def test_answer_length_is_the_longest_answer_and_half_again_capped(longest, expected):
    assert answer_length(longest, 64) == expected
