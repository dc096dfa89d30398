"""A task as data (lm-evaluation-harness's idea): how a row becomes a prompt and a training
target, how an answer is read back, and the closed label set if there is one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from star.errors import ConfigError
from star.tasks.extract import Found, first_line, label_locator, same_free

# A task file's labels are listed in its default prompt when there are at most this many.
MAX_LISTED_LABELS = 20


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    target: str  # the text a labeller gives and training teaches
    answer: str  # the gold answer as the task's extractor normalises it
    choices: tuple[str, ...] | None = None  # this row's own label set (multiple choice)


def _space(answer: str) -> str:
    """Labels follow an 'Answer:'-style cue after a space, as in running text."""
    return " " + answer


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    template: str  # prompt: the row's text as {prompt}, the label set as {labels}
    target: Callable[[str], str]  # dataset answer -> training target text
    locate: Callable[[str], Found | None]  # generated or target text -> normalised answer
    same: Callable[[str, str], bool]  # (predicted, gold) normalised answers
    max_new_tokens: int  # generation length at evaluation
    labels: tuple[str, ...] = ()  # a closed label set: confidence renormalises over it
    eval_mode: str = "generate"  # default evaluation: "options" (label likelihood) or "generate"

    def prompt(self, text: str) -> str:
        shown = (self.target(label).strip() for label in self.labels)
        return self.template.format(prompt=text, labels=", ".join(shown))

    def extract(self, text: str, choices: tuple[str, ...] | None = None) -> str | None:
        found = (label_locator(choices) if choices else self.locate)(text)
        return found.answer if found else None

    def example(
        self, id: str, question: str, answer: str, choices: tuple[str, ...] | None = None
    ) -> Example:
        target = self.target(answer)
        gold = self.extract(target, choices)
        if gold is None:
            raise ConfigError(f"{self.name}: no answer can be extracted from target {target!r}")
        return Example(id, self.prompt(question), target, gold, choices)

    def grade(
        self, generated: str, gold: str, choices: tuple[str, ...] | None = None
    ) -> tuple[str | None, bool]:
        """(extracted answer or None, whether it matches the gold answer)."""
        pred = self.extract(generated, choices)
        return pred, pred is not None and self.same(pred, gold)


def classification(
    name: str,
    description: str,
    labels: tuple[str, ...],
    template: str | None = None,
    verbalise: Callable[[str], str] | None = None,
) -> TaskSpec:
    """A closed-label task (or, with no labels, a free-answer one) over a labelled file: the
    target is the label (as `verbalise` writes it) after a space, evaluated by option
    likelihood by default."""
    if template is None:
        listed = labels and len(labels) <= MAX_LISTED_LABELS
        template = (
            "{prompt}\nAnswer with one of: {labels}.\nAnswer:" if listed else ("{prompt}\nAnswer:")
        )
    if not labels:
        return TaskSpec(name, description, template, _space, first_line, same_free, 64)
    if verbalise is None:
        return TaskSpec(
            name,
            description,
            template,
            _space,
            label_locator(labels),
            str.__eq__,
            32,
            labels,
            "options",
        )
    spoken = {label: verbalise(label) for label in labels}
    return TaskSpec(
        name,
        description,
        template,
        lambda answer: _space(spoken.get(answer, answer)),
        label_locator(labels, tuple(spoken.values())),
        str.__eq__,
        32,  # generation stops at end-of-sequence; the longest label fits
        labels,
        "options",
    )


def user_spec(max_new_tokens: int) -> TaskSpec:
    """A labelling project's task: each prompt as the user wrote it, a label taught after a
    space (as a task file teaches it), an item's own choices as its label set, free answers
    read as their first line and at most `max_new_tokens` long."""
    return TaskSpec(
        "project",
        "a labelling project's own pool",
        "{prompt}",
        _space,
        first_line,
        same_free,
        max_new_tokens,
    )
