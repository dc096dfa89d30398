"""Predictions and confidences on the evaluation split (method.md §6).

Two modes. `options` (closed label sets): p(label | prompt) of every label (or of the row's own
choices) from teacher-forced passes that read each prompt once, renormalised over the labels;
the prediction is the most probable label and the confidence its probability.
`generate`: greedy generation, answer extraction. Confidence, read off the same generation:
- closed label sets (BoolQ, OBQA): the probability of the predicted label renormalised over the
  label set, at the step that generated it, in the same spelling (" B", "B", "True", …);
- free answers (GSM8K): the probability of the extracted final-answer tokens (their product).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from star.data import IGNORE, Encoded, Example, collate, token_budget_batches
from star.generate import Generated, generate, prefill
from star.metrics import accuracy, expected_calibration_error
from star.scoring import causal_lm
from star.stopping import normalised_entropy
from star.tasks import TaskSpec, label_locator

# Spellings a label may take in generated text; a spelling counts only if every label is
# one token in it, so the renormalisation compares like with like.
_SPELLINGS = (str, lambda s: " " + s, str.capitalize, lambda s: " " + s.capitalize())


@dataclass(frozen=True)
class LabelTokens:
    """The label set's token ids in each single-token spelling."""

    watched: list[int]  # all watched token ids, spelling-major, label order within
    spelling_of: dict[int, int]  # token id -> spelling index
    n_labels: int

    @classmethod
    def build(cls, tokenizer, labels: tuple[str, ...]) -> LabelTokens:
        watched: list[int] = []
        spelling_of: dict[int, int] = {}
        for spell in _SPELLINGS:
            ids = [tokenizer(spell(lab), add_special_tokens=False)["input_ids"] for lab in labels]
            flat = [i[0] for i in ids if len(i) == 1]
            if len(flat) == len(labels) and not set(flat) & set(spelling_of):
                spelling_of.update({t: len(watched) // len(labels) for t in flat})
                watched += flat
        return cls(watched, spelling_of, len(labels))

    def columns(self, token: int) -> slice | None:
        """Watched-logit columns of the spelling `token` belongs to (None: not a label token)."""
        if token not in self.spelling_of:
            return None
        s = self.spelling_of[token]
        return slice(s * self.n_labels, (s + 1) * self.n_labels)


def label_confidence(spec: TaskSpec, table: LabelTokens, gen: Generated) -> float:
    found = spec.locate(gen.text)
    if not gen.token_ids or not table.watched:
        return 1.0 / max(1, len(spec.labels))
    if found is None:  # no label produced: the model's best label at the first step
        return torch.softmax(gen.watched_logits[0, : table.n_labels], -1).max().item()
    steps = gen.tokens_at(found.start, found.end)
    if not steps:  # text and tokens disagree (split multi-byte characters): no reading
        return 1.0 / len(spec.labels)
    step = steps[0]
    cols = table.columns(gen.token_ids[step])
    if cols is None:  # the label is part of a longer token: its own probability
        return gen.chosen_logp[step].exp().item()
    probs = torch.softmax(gen.watched_logits[step, cols], -1)  # (n_labels,)
    return probs[spec.labels.index(found.answer)].item()


def answer_confidence(
    spec: TaskSpec, gen: Generated, choices: tuple[str, ...] | None = None
) -> float:
    found = (label_locator(choices) if choices else spec.locate)(gen.text)
    if found is None:
        return 0.0
    steps = gen.tokens_at(found.start, found.end)
    return gen.chosen_logp[steps].sum().exp().item()


@dataclass(frozen=True)
class Prediction:
    id: str
    output: str
    predicted: str | None
    correct: bool
    answer: str
    confidence: float


def evaluate(
    model,
    tokenizer,
    spec: TaskSpec,
    examples: list[Example],
    prompts: list[Encoded],
    batch_size: int,
    prefill_tokens: int,
) -> list[Prediction]:
    table = LabelTokens.build(tokenizer, spec.labels) if spec.labels else None
    outputs = generate(
        model,
        tokenizer,
        prompts,
        spec.max_new_tokens,
        batch_size,
        prefill_tokens=prefill_tokens,
        watched=table.watched if table else None,
        desc="evaluating",
    )
    predictions = []
    for example, gen in zip(examples, outputs, strict=True):
        predicted, correct = spec.grade(gen.text, example.answer, example.choices)
        if table and not example.choices:
            confidence = label_confidence(spec, table, gen)
        else:
            confidence = answer_confidence(spec, gen, example.choices)
        predictions.append(
            Prediction(example.id, gen.text, predicted, correct, example.answer, confidence)
        )
    return predictions


def summarise(predictions: list[Prediction]) -> dict[str, float]:
    correct = torch.tensor([p.correct for p in predictions], dtype=torch.bool)
    confidence = torch.tensor([p.confidence for p in predictions])
    return {"accuracy": accuracy(correct), "ece": expected_calibration_error(confidence, correct)}


def option_probabilities(
    model, prompts: list[Encoded], options: list[list[list[int]]], pad_id: int, batch_tokens: int
) -> list[torch.Tensor]:
    """p(option | prompt) renormalised over each item's options; per item (n_options_i,)."""
    logp = option_logprobs(model, prompts, options, pad_id, batch_tokens)
    return [torch.softmax(part, -1) for part in logp]


@dataclass(frozen=True)
class Answer:
    """The model's own answer to an item, as a labeller would see it (no gold needed)."""

    text: str
    token_ids: list[int]  # the option's ids as training spells it, or the generated ids
    confidence: float  # p(answer): renormalised over the options, or the greedy sequence's
    uncertainty: float  # in [0, 1]: the options' normalised entropy, or 1 − confidence


def label_free_answers(
    model,
    tokenizer,
    prompts: list[Encoded],
    options: list[tuple[tuple[str, ...], list[list[int]]] | None],
    length: int,
    batch_size: int,
    budget: int,
) -> list[Answer]:
    """Each item's label-free answer: one rule for a run's pool and stop set and a labelling
    project's batches, so a simulated run answers as a project would.

    options[i]: item i's label set and each label's token ids, or None for a free answer.
    A closed item's answer is its most likely option (what `evaluate_options` reads); a free
    item's is greedy generation of at most `length` tokens.
    """
    out: list[Answer | None] = [None] * len(prompts)
    closed = [i for i, o in enumerate(options) if o is not None]
    free = [i for i, o in enumerate(options) if o is None]
    if closed:
        probs = option_probabilities(
            model,
            [prompts[i] for i in closed],
            [options[i][1] for i in closed],  # type: ignore[index]
            tokenizer.pad_token_id,
            budget,
        )
        for i, p in zip(closed, probs, strict=True):
            labels, ids = options[i]  # type: ignore[misc]
            best = int(p.argmax())
            out[i] = Answer(labels[best], ids[best], float(p[best]), float(normalised_entropy(p)))
    if free:
        gens = generate(
            model, tokenizer, [prompts[i] for i in free], length, batch_size, prefill_tokens=budget
        )
        for i, g in zip(free, gens, strict=True):
            sure = float(g.chosen_logp.sum().exp()) if g.token_ids else 0.0
            out[i] = Answer(g.text.strip(), list(g.token_ids), sure, 1.0 - sure)
    return out  # type: ignore[return-value]


def option_ids(tokenizer, spec: TaskSpec, options: tuple[str, ...]) -> list[list[int]]:
    """Token ids of each option as the training target spells it (see `end_if_prefix`)."""
    ids = [tokenizer(spec.target(o), add_special_tokens=False)["input_ids"] for o in options]
    return end_if_prefix(ids, tokenizer.eos_token_id)


def end_if_prefix(ids: list[list[int]], eos: int) -> list[list[int]]:
    """The options' token ids, each ending with EOS if one option's ids are a prefix of
    another's: scored without it the longer one could never win ("yes" vs "yes sir"), and a
    tuned model, trained on target + EOS, learns to stop after the shorter one."""
    prefix = any(a != b and b[: len(a)] == a for a in ids for b in ids)
    return [i + [eos] for i in ids] if prefix else ids


def evaluate_options(
    model, tokenizer, spec: TaskSpec, examples: list[Example], prompts: list[Encoded], budget: int
) -> list[Prediction]:
    """Closed-label evaluation by option likelihood (lm-evaluation-harness's multiple choice):
    the prediction is argmax_o p(o | prompt), the confidence p renormalised over the options."""
    table = {
        o: option_ids(tokenizer, spec, o) for o in {e.choices or spec.labels for e in examples}
    }
    options = [table[e.choices or spec.labels] for e in examples]
    logp = option_logprobs(model, prompts, options, tokenizer.pad_token_id, budget)
    predictions = []
    for example, scores in zip(examples, logp, strict=True):
        labels = example.choices or spec.labels
        probs = torch.softmax(scores, -1)  # (n_options,)
        best = int(probs.argmax())
        predicted = labels[best]
        predictions.append(
            Prediction(
                example.id,
                predicted,
                predicted,
                spec.same(predicted, example.answer),
                example.answer,
                probs[best].item(),
            )
        )
    return predictions


@torch.inference_mode()
def option_logprobs(
    model, prompts: list[Encoded], options: list[list[list[int]]], pad_id: int, budget: int
) -> list[torch.Tensor]:
    """log p(option | prompt) = Σ_t log p(o_t | prompt, o_<t) for every option of every item,
    reading each prompt once: prompts are prefilled in length buckets (≤ `budget` tokens), and
    each option continues from a copy of its prompt's KV cache.

    options[i]: the token ids of item i's options. returns: per item, (n_options_i,) log-probs.
    """
    on = next(model.parameters()).device
    head = causal_lm(model).get_output_embeddings()
    out = [torch.zeros(len(o)) for o in options]
    for rows in token_budget_batches([len(p.prompt_ids) for p in prompts], budget):
        batch = collate([Encoded(prompts[i].prompt_ids, []) for i in rows], pad_id, "left").to(on)
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp_min(0)  # (b, W)
        logits, cache = prefill(model, batch.input_ids, batch.attention_mask, positions, budget)
        first = torch.log_softmax(logits.float(), -1)  # (b, V): predicts each option's 1st token
        pairs = [(r, k) for r, i in enumerate(rows) for k in range(len(options[i]))]
        at = torch.tensor([r for r, _ in pairs], device=on)  # (P,) prompt row of each pair
        token = torch.tensor([options[rows[r]][k][0] for r, k in pairs], device=on)  # (P,)
        for (r, k), value in zip(pairs, first[at, token].tolist(), strict=True):
            out[rows[r]][k] = value
        longer = [(r, k) for r, k in pairs if len(options[rows[r]][k]) > 1]
        steps = [len(options[rows[r]][k]) - 1 for r, k in longer]  # tokens after the first
        cap = max(1, 8 * budget // batch.input_ids.shape[1])  # cache rows copied per forward
        for group in token_budget_batches(steps, budget):  # similar lengths: little padding
            for start in range(0, len(group), cap):
                chunk = [longer[j] for j in group[start : start + cap]]
                follow = _continue(
                    model,
                    head,
                    cache,
                    batch.attention_mask,
                    positions[:, -1],
                    [(r, options[rows[r]][k]) for r, k in chunk],
                    pad_id,
                )  # (c,)
                for (r, k), value in zip(chunk, follow.tolist(), strict=True):
                    out[rows[r]][k] += value
    return out


def _continue(
    model,
    head,
    cache,
    prompt_mask: torch.Tensor,
    last: torch.Tensor,
    items: list[tuple[int, list[int]]],
    pad_id: int,
) -> torch.Tensor:
    """Σ log p of each option's tokens after its first, teacher-forced from a copy of its
    prompt's cache. items: (prompt row, option ids); returns (c,)."""
    on = prompt_mask.device
    index = torch.tensor([r for r, _ in items], device=on)  # (c,)
    length = max(len(o) for _, o in items) - 1
    inputs = torch.full((len(items), length), pad_id, dtype=torch.long, device=on)  # (c, L-1)
    targets = torch.full((len(items), length), IGNORE, dtype=torch.long, device=on)  # (c, L-1)
    for row, (_, o) in enumerate(items):
        inputs[row, : len(o) - 1] = torch.tensor(o[:-1])
        targets[row, : len(o) - 1] = torch.tensor(o[1:])
    real = targets != IGNORE  # (c, L-1)
    mask = torch.cat([prompt_mask[index], real.long()], 1)  # (c, W + L-1)
    positions = last[index, None] + 1 + torch.arange(length, device=on)  # (c, L-1)
    hidden = (
        causal_lm(model)
        .get_decoder()(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            cache=select_rows(cache, index),
            use_cache=True,
        )
        .last_hidden_state
    )  # (c, L-1, H)
    logp = torch.log_softmax(head(hidden[real]).float(), -1)  # (n, V)
    token = logp.gather(-1, targets[real][:, None]).squeeze(-1)  # (n,)
    rows = real.nonzero()[:, 0]  # (n,)
    return torch.zeros(len(items), device=on).index_add_(0, rows, token).cpu()


def select_rows(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache holding the given rows (repeats allowed) of `cache`, which stays as it is."""
    copy = DynamicCache()
    for layer, entry in enumerate(cache.layers):
        copy.update(entry.keys[index], entry.values[index], layer)
    return copy
