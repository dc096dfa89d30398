"""The model's own answer to an item, as a labeller would see it (no gold needed): one rule
for a run's pool and stop set and a labelling project's batches."""

from __future__ import annotations

from dataclasses import dataclass

from star.engine.batching import Encoded
from star.engine.generate import generate
from star.engine.options import option_probabilities
from star.method.stopping import normalised_entropy


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
