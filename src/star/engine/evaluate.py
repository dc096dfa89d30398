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

from star.engine.batching import Encoded
from star.engine.generate import Generated, generate
from star.engine.options import option_ids, option_logprobs
from star.method.metrics import accuracy, expected_calibration_error
from star.tasks.extract import label_locator
from star.tasks.spec import Example, TaskSpec

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
