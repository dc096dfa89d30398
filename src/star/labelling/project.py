"""A labelling project: a user's own pool, labels from people, rounds of training on them.

Layout (one directory per project):
    project.yaml     star_version, the field names, and the run options (RunConfig)
    pool.jsonl       the pool as read at `init` (id, prompt, choices): later edits of the
                     user's file cannot change what ids mean
    eval.jsonl       evaluation items with answers (optional)
    labels.jsonl     journal: {"id", "label", "source"}; the last line for an id wins
    batches.jsonl    journal: {"batch", "ids", "file", "after_round"}, one per `star next`
    rounds.jsonl     journal: one line of metrics per finished `star train`, written last
    rounds/NNN/adapter/  the PEFT adapter of round NNN
    exports/         batch files `star next` wrote (when no --out was given)
    imports/         Label Studio exports `star pull` saved before importing them
    labelstudio.jsonl  journal: {"url", "project"} the Label Studio project of each server
    .lock            flock of the star process working here

Journals are only appended to (one write, then fsync); a line cut short by a crash is
ignored when read, so every state is either before or after a command, never between.

A little over 400 lines: one class, one method per command; the model work itself is the
shared step's (`active.step.Learner`), the label checks `incoming`'s, the journals `journal`'s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from star import config as cfg
from star.crash import crash_point
from star.errors import BadInputError, EmptyPoolError, RunDirError, StarError
from star.files import atomic_write, lock_dir, write_folder, write_jsonl
from star.labelling.annotator import Endpoint
from star.labelling.formats import SUFFIX, ToLabel, parse, render
from star.labelling.incoming import checked_labels
from star.labelling.journal import append_jsonl, read_journal
from star.method import stopping
from star.method.strategies import configure
from star.seeds import stop_set
from star.tasks.extract import normalised_text
from star.tasks.reading import Fields, Item, read_items
from star.tasks.spec import Example, TaskSpec, user_spec
from star.version import __version__

if TYPE_CHECKING:  # the engine is imported when a command needs it: status stays quick
    from star.active.step import Learner
    from star.engine.evaluate import Prediction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    fields: Fields
    max_new_tokens: int
    run: cfg.RunConfig

    def to_dict(self) -> dict:
        return {
            "star_version": self.run.star_version,
            "fields": vars(self.fields),
            "max_new_tokens": self.max_new_tokens,
            "run": self.run.to_dict(),
        }


class Project:
    """A labelling project directory, locked while open: its pool, labels, batches and trained
    rounds (the module docstring lists the files). Open one with `Project.open` or
    `star.open_project`, create one with `star.init_project`."""

    def __init__(self, path: Path, settings: Settings, lock: int):
        self.path, self.settings, self._lock = path, settings, lock

    # ------------------------------------------------------------------ opening
    @classmethod
    def init(
        cls,
        path: Path,
        pool_file: Path,
        settings: Settings,
        seed_file: Path | None = None,
        eval_file: Path | None = None,
    ) -> None:
        """Read and check everything first, build the project in a temp folder, rename it
        into place: a failed init leaves nothing behind."""
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunDirError(f"{path} exists and is not empty: choose a new project directory")
        pool = read_items(pool_file, settings.fields)
        seed = read_items(seed_file, settings.fields, need_answer=True) if seed_file else []
        evals = read_items(eval_file, settings.fields, need_answer=True) if eval_file else []
        known = {i.id: i for i in pool}
        for item in seed:
            if item.id in known and known[item.id].prompt != item.prompt:
                raise BadInputError(
                    f"{seed_file}: id {item.id!r} has another prompt in the pool {pool_file}"
                )
            known.setdefault(item.id, item)
        items = list(known.values())
        labels = {i.id: i.answer for i in pool + seed if i.answer is not None}
        overlap = {i.id for i in evals} & set(known) | (
            {i.prompt for i in evals} & {i.prompt for i in items}
        )
        if overlap:
            log.warning(
                "%s: %d evaluation item(s) share an id or prompt with the pool; accuracy on "
                "them is not held-out",
                eval_file,
                len(overlap),
            )
        from star.engine import model as models

        models.check_causal_lm(settings.run.model.name)

        def fill(folder: Path) -> None:
            atomic_write(
                folder / "project.yaml", yaml.safe_dump(settings.to_dict(), sort_keys=False)
            )
            _write_items(
                folder / "pool.jsonl", [Item(i.id, i.prompt, None, i.choices) for i in items]
            )
            if evals:
                _write_items(folder / "eval.jsonl", evals)
            append_jsonl(
                folder / "labels.jsonl",
                ({"id": i, "label": a, "source": "init"} for i, a in labels.items()),
            )

        write_folder(path, fill, replace=False)

    @classmethod
    def open(cls, path: Path) -> Project:
        """Lock the project (a second star process is refused) and read its settings."""
        if not (path / "project.yaml").is_file():
            raise RunDirError(f"{path} is not a star project (no project.yaml): run `star init`")
        lock = lock_dir(path)
        try:
            tree = yaml.safe_load((path / "project.yaml").read_text(encoding="utf-8"))
            if not isinstance(tree, dict) or "run" not in tree:
                raise RunDirError(f"{path / 'project.yaml'}: not a star project file")
            if tree.get("star_version") != __version__:
                raise RunDirError(
                    f"{path} was written by star {tree.get('star_version')}, this is star "
                    f"{__version__}: use that version"
                )
            settings = Settings(
                Fields(**tree["fields"]),
                int(tree["max_new_tokens"]),
                configure(cfg.from_dict(tree["run"], str(path / "project.yaml"))),
            )
        except BaseException:
            os.close(lock)
            raise
        return cls(path, settings, lock)

    def close(self) -> None:
        """Release the lock (`with` does it)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    # ------------------------------------------------------------------ state
    def pool(self) -> list[Item]:
        """The pool as read at `init`: id, prompt and choices of every item."""
        return [_item(r) for r in read_journal(self.path / "pool.jsonl")]

    def eval_items(self) -> list[Item]:
        """The evaluation items with their answers ([] without an eval file)."""
        return [_item(r) for r in read_journal(self.path / "eval.jsonl")]

    def labels(self, people_only: bool = False) -> dict[str, str]:
        """id -> label of every labelled item (the last import of an id wins; a person's label
        is always recorded after the LLM's it replaces). `people_only`: without the labels an
        LLM annotator gave."""
        rows = read_journal(self.path / "labels.jsonl")
        return {r["id"]: r["label"] for r in rows if not (people_only and _by_llm(r))}

    def labelled_by(self) -> dict[str, int]:
        """How many items hold a person's label and how many an LLM's."""
        last = {r["id"]: r for r in read_journal(self.path / "labels.jsonl")}
        llm = sum(_by_llm(r) for r in last.values())
        return {"people": len(last) - llm, "llm": llm}

    def batches(self) -> list[dict]:
        """Every exported batch: {"batch", "ids", "file", "after_round"}."""
        return read_journal(self.path / "batches.jsonl")

    def rounds(self) -> list[dict]:
        """Every trained round's metrics row, in order."""
        return read_journal(self.path / "rounds.jsonl")

    def batch(self, number: int | None) -> dict:
        """Batch `number` (None: the last one)."""
        batches = self.batches()
        if not batches:
            raise StarError(f"{self.path}: no batch yet: run `star next` first")
        if number is None:
            return batches[-1]
        if not 0 <= number < len(batches):
            raise StarError(f"{self.path}: no batch {number} (batches 0–{len(batches) - 1})")
        return batches[number]

    def label_studio_project(self, url: str) -> int | None:
        """The Label Studio project a push created for this project on `url`, if any."""
        links = [r for r in read_journal(self.path / "labelstudio.jsonl") if r["url"] == url]
        return links[-1]["project"] if links else None

    def link_label_studio(self, url: str, project: int) -> None:
        """Remember the Label Studio project of this server."""
        if self.label_studio_project(url) != project:
            append_jsonl(self.path / "labelstudio.jsonl", [{"url": url, "project": project}])

    def pending(self) -> set[str]:
        """Exported for labelling, not labelled yet."""
        labels = self.labels()
        return {i for b in self.batches() for i in b["ids"] if i not in labels}

    def status(self) -> dict:
        """Counts (pool, labelled, waiting, unlabelled, batches), every round's metrics and one
        `stop:` line per stopping rule."""
        pool, labels, pending = self.pool(), self.labels(), self.pending()
        return {
            "pool": len(pool),
            "labelled": len(labels),
            "labelled_by": self.labelled_by(),
            "waiting": len(pending),
            "unlabelled": len(pool) - len(labels) - len(pending),
            "batches": len(self.batches()),
            "rounds": self.rounds(),
            "stop": [d.line() for d in self.stop_decisions()],
        }

    # ------------------------------------------------------------------ stopping
    def stop_ids(self) -> list[str]:
        """The stop set: a seeded sample of the pool, the same every round."""
        run = self.settings.run
        return stop_set([i.id for i in self.pool()], run.loop.stop_examples(project=True), run.seed)

    def stop_decisions(self) -> list[stopping.Decision]:
        """Every stopping rule on the rounds trained so far (the project's `loop.stop` rule
        with its `loop.stop_threshold`, the others with their defaults)."""
        history = []
        for row in self.rounds():
            path = self.path / "rounds" / f"{row['round']:03d}" / "stop.jsonl"
            if not path.exists():  # trained by a version without stop sets
                history = []
                continue
            history.append(stopping.from_rows(read_journal(path)))
        loop = self.settings.run.loop
        return stopping.decisions(history, loop.stop, loop.stop_threshold)

    # ------------------------------------------------------------------ labels
    def import_labels(
        self, file: Path, relabel: bool = False, allow_unexported: bool = False
    ) -> dict[str, int]:
        """Check every label in `file` first, then append the new ones in one write.

        Importing the same file twice changes nothing. A label for an id never exported, or
        one that differs from the recorded label, is refused unless the flag allows it.
        """
        # against people's labels only: a person's label replaces an LLM's without --relabel
        labels = self.labels(people_only=True)
        exported = {i for b in self.batches() for i in b["ids"]}
        fields = self.settings.fields
        found = parse(file, ("id", fields.id), ("label", fields.answer))
        new, unchanged = checked_labels(
            file, found, self.pool(), labels, exported, relabel, allow_unexported
        )
        append_jsonl(
            self.path / "labels.jsonl",
            ({"id": i, "label": lab.label, "source": str(file)} for i, lab in new.items()),
        )
        return {"imported": len(new), "unchanged": unchanged}

    # ------------------------------------------------------------------ model work
    def spec(self) -> TaskSpec:
        """How the project's items read: prompts as written, labels taught after a space."""
        return user_spec(self.settings.max_new_tokens)

    def examples(self) -> list[Example]:
        """The pool in its order, each item with its label (and training target) if it has one."""
        labels, spec = self.labels(), self.spec()
        return [
            Example(
                i.id,
                i.prompt,
                spec.target(labels[i.id]) if i.id in labels else "",
                labels.get(i.id, ""),
                i.choices,
            )
            for i in self.pool()
        ]

    def learner(self) -> Learner:
        """The shared active-learning step on this project's model and options; a project
        measures uncertainty on the model's own answers (people give no gold to measure on)."""
        from star.active.step import Learner

        return Learner(self.settings.run, self.spec(), "generated", self.examples())

    def adapter_dir(self, round: int) -> Path:
        """Where round `round`'s PEFT adapter is saved."""
        return self.path / "rounds" / f"{round:03d}" / "adapter"

    def train(self) -> dict:
        """A fresh adapter on every label so far, in pool order (the step a simulated run
        takes), then evaluation if the project has an eval file and the stop set's answers;
        the metrics line commits the round."""
        from star.engine.evaluate import summarise
        from star.engine.model import save_adapter

        labels = self.labels()
        if not labels:
            raise EmptyPoolError(f"{self.path}: no labels yet: import some with `star label`")
        k = len(self.rounds())
        examples = self.examples()
        labelled = [e for e in examples if e.id in labels]
        learner = self.learner()
        model, loss = learner.train(k, labelled)
        save_adapter(model, self.adapter_dir(k))
        row = {"round": k, "n_labeled": len(labelled), "train_loss": loss}
        evals = self.eval_items()
        if evals:
            row |= summarise(self._evaluate(learner, model, evals))
        stop = set(self.stop_ids())
        stop_examples = [e for e in examples if e.id in stop]
        if stop_examples:
            rows = learner.stop_rows(model, stop_examples, labelled)
            write_jsonl(self.adapter_dir(k).parent / "stop.jsonl", rows)
        append_jsonl(self.path / "rounds.jsonl", [row])  # commits the round
        return row

    def _evaluate(self, learner: Learner, model, evals: list[Item]) -> list[Prediction]:
        """The model's answer to each evaluation item against its answer, as text."""
        from star.engine import model as models
        from star.engine.evaluate import Prediction

        examples = [Example(i.id, i.prompt, "", i.answer or "", i.choices) for i in evals]
        with models.merged(model, learner.merge):
            answers = learner.answers(model, examples, self.settings.max_new_tokens)
        return [
            Prediction(
                i.id,
                a.text,
                a.text,
                normalised_text(a.text) == normalised_text(i.answer or ""),
                i.answer or "",
                a.confidence,
            )
            for i, a in zip(evals, answers, strict=True)
        ]

    def next(self, size: int, fmt: str = "jsonl", out: Path | None = None) -> tuple[Path, int, int]:
        """Choose up to `size` items to label and write them with the model's answers; returns
        (file, how many, how many were left).

        Only what the strategy reads is computed (`random` runs no forward pass over the
        candidates), and the model answers only the chosen items unless the strategy needed
        every candidate's answer anyway.
        """
        rounds, labels, pending = self.rounds(), self.labels(), self.pending()
        examples = self.examples()
        unlabelled = [e for e in examples if e.id not in labels and e.id not in pending]
        if not unlabelled:
            raise EmptyPoolError(
                f"{self.path}: nothing left to select: every pool item is labelled or waiting "
                f"in a batch ({len(pending)} waiting)"
            )
        # labelled or waiting in a batch: a spreading selector counts both as covered
        covered = [e for e in examples if e.id in labels or e.id in pending]
        last = len(rounds) - 1 if rounds else -1
        learner = self.learner()
        model = learner.load_adapter(self.adapter_dir(last)) if last >= 0 else learner.base
        choice = learner.choose(model, last, unlabelled, covered, size)
        by_id = {e.id: e for e in unlabelled}
        answered = dict(choice.answered)
        todo = [by_id[s.id] for s in choice.selected if s.id not in answered]
        labelled = [e for e in examples if e.id in labels]
        answered |= self._answer(learner, model, last, todo, labelled)
        rows = [_to_label(by_id[s.id], answered[s.id], s.score) for s in choice.selected]
        after = last if last >= 0 else None
        number = len(self.batches())
        out = out or self.path / "exports" / f"batch-{number:03d}{SUFFIX[fmt]}"
        atomic_write(out, render(rows, fmt, model_version(after)))
        append_jsonl(
            self.path / "batches.jsonl",
            [
                {
                    "batch": number,
                    "ids": [r.id for r in rows],
                    "file": str(out),
                    "after_round": after,
                }
            ],
        )
        return out, len(rows), choice.candidates

    def _answer(
        self, learner: Learner, model, last: int, todo: list[Example], labelled: list[Example]
    ) -> dict:
        """The model's answers to `todo`, by id (the answer length from the labelled targets)."""
        from star.engine import model as models

        if not todo:
            return {}
        length = learner.answer_length(labelled)
        with models.merged(model, last >= 0 and learner.merge):
            said = learner.answers(model, todo, length)
        return {e.id: a for e, a in zip(todo, said, strict=True)}

    def preannotate(self, ids: list[str]) -> tuple[str, list[ToLabel]]:
        """The last trained round's answers to these pool items (the base model's before any
        round), for refreshing the pre-annotations of items still waiting to be labelled:
        (model version, one row per id; its uncertainty is the answer's own, in [0, 1])."""
        examples = self.examples()
        by_id = {e.id: e for e in examples}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise StarError(f"{self.path}: not pool items: {', '.join(unknown[:5])}")
        rounds = self.rounds()
        last = len(rounds) - 1 if rounds else -1
        learner = self.learner()
        model = learner.load_adapter(self.adapter_dir(last)) if last >= 0 else learner.base
        todo = [by_id[i] for i in ids]
        labels = self.labels()
        labelled = [e for e in examples if e.id in labels]
        answered = self._answer(learner, model, last, todo, labelled)
        rows = [_to_label(e, answered[e.id], answered[e.id].uncertainty) for e in todo]
        return model_version(last if last >= 0 else None), rows

    # ------------------------------------------------------------------ the LLM annotator
    def annotate(
        self,
        endpoint: Endpoint,
        batch: int | None = None,
        threshold: float = 0.9,
        max_requests: int | None = None,
        fmt: str = "jsonl",
        dry_run: bool = False,
        max_tokens: int | None = None,
    ) -> dict:
        """An LLM labels a batch's waiting items; its answers at or above `threshold`
        confidence become labels (with their provenance), the rest go to people as a new
        batch pre-annotated with the LLM's answers. Each answer is journaled as it arrives, so
        a killed run resumes without asking again. `max_requests` and `max_tokens` (prompt +
        completion, as the server counts them) cap what this run spends, checked before each
        item (an item scored per label takes one request per label); what is left waits for
        the next. Returns counts and the people's batch."""
        from star.labelling.annotator import PROMPT_VERSION

        if not 0 <= threshold <= 1:
            raise StarError(f"--threshold must be in [0, 1], got {threshold}")
        chosen = self.batch(batch)
        if "reviews" in chosen:  # people's share of an annotated batch: that batch again
            chosen = self.batch(chosen["reviews"])
        elif batch is None:  # the last batch `star next` wrote
            chosen = [b for b in self.batches() if "reviews" not in b][-1]
        by_id = {i.id: i for i in self.pool()}
        labels = self.labels()
        waiting = [by_id[i] for i in chosen["ids"] if i not in labels]
        source = {"annotator": endpoint.base_url, "model": endpoint.model}
        source |= {"prompt_version": PROMPT_VERSION, "scoring": endpoint.scoring}
        answered = {
            r["id"]: r
            for r in read_journal(self.path / "llm.jsonl")
            if all(r.get(k) == v for k, v in source.items())
        }
        todo = [i for i in waiting if i.id not in answered]
        if dry_run:
            chars = sum(len(i.prompt) for i in todo)
            spans = [endpoint.requests_per_item(i.choices) for i in todo]
            return {"requests": sum(f for f, _ in spans), "most_requests": sum(m for _, m in spans),
                    "prompt_chars": chars, "dry_run": True}  # fmt: skip
        asked, spent, requests = self._ask(
            endpoint, todo, source, answered, max_requests, max_tokens
        )
        counts = {"asked": len(asked), "answered_before": len(waiting) - len(todo)}
        counts |= {"tokens": spent, "requests": requests}
        left = len(todo) - len(asked)
        if left:
            return counts | {"left": left}
        rows = [answered[i.id] for i in waiting]
        sure = [r for r in rows if _sure(r, threshold)]
        append_jsonl(
            self.path / "labels.jsonl",
            ({"id": r["id"], "label": r["answer"], "source": "llm", **source,
              "confidence": r["confidence"]} for r in sure),
        )  # fmt: skip
        review = [r for r in rows if not _sure(r, threshold)]
        counts |= {"accepted": len(sure), "to_people": len(review), "left": 0}
        if review:
            counts["file"] = self._review_batch(chosen, review, by_id, fmt, endpoint)
        return counts

    def _ask(
        self,
        endpoint: Endpoint,
        todo: list[Item],
        source: dict,
        answered: dict[str, dict],
        max_requests: int | None,
        max_tokens: int | None,
    ) -> tuple[list[Item], int, int]:
        """Ask the LLM for each item until a budget is spent, journaling each answer (into
        `answered` too); returns (items asked, tokens, requests)."""
        from star.labelling.annotator import ask

        client = endpoint.client() if todo else None
        asked, spent, requests = [], 0, 0
        # until the endpoint has given one usable answer, its answers are held back: an
        # endpoint that answers nothing usable at all (a label outside the set, an empty reply,
        # to every item) is an error that records nothing
        trusted = any(r["answer"] for r in answered.values())
        held: list[tuple[dict, str]] = []
        for item in todo:
            if (max_tokens is not None and spent >= max_tokens) or (
                max_requests is not None and requests >= max_requests
            ):
                break  # the budget is spent: the rest wait for the next run
            asked.append(item)
            said = ask(client, endpoint, item.prompt, item.choices)
            spent += said.tokens
            requests += said.requests
            row = {"id": item.id, "answer": said.answer, "confidence": said.confidence}
            row |= source | {"tokens": said.tokens, "requests": said.requests}
            answered[item.id] = row
            held.append((row, said.said))
            trusted = trusted or said.usable
            if trusted:  # journaled before the next request
                append_jsonl(self.path / "llm.jsonl", [r for r, _ in held])
                held = []
            crash_point("annotate answer")
        if held:
            (first, text), n = held[0], len(held)
            raise StarError(
                f"the LLM endpoint {endpoint.base_url}: none of its {n} answer(s) was usable "
                f"(no label of the set, or nothing: it said {text.strip()[:60]!r} to "
                f"{first['id']!r}); check --llm-model and that the server follows instructions"
            )
        return asked, spent, requests

    def _review_batch(self, chosen: dict, review: list[dict], by_id, fmt: str, endpoint) -> str:
        """The items the LLM was unsure of, as a new batch with its answers pre-annotated (the
        same batch again if it exists already)."""
        ids = [r["id"] for r in review]
        for b in self.batches():
            if b.get("reviews") == chosen["batch"] and b["ids"] == ids:
                return b["file"]
        number = len(self.batches())
        out = self.path / "exports" / f"batch-{number:03d}{SUFFIX[fmt]}"
        rows = []
        for r in review:
            item = by_id[r["id"]]
            answer = r["answer"] if r["answer"] is not None else ""
            sure = r["confidence"] if r["confidence"] is not None else 0.0
            rows.append(ToLabel(item.id, item.prompt, item.choices, answer, sure, 1 - sure))
        atomic_write(out, render(rows, fmt, f"llm:{endpoint.model}"))
        append_jsonl(
            self.path / "batches.jsonl",
            [{"batch": number, "ids": ids, "file": str(out),
              "after_round": chosen["after_round"], "reviews": chosen["batch"]}],
        )  # fmt: skip
        return str(out)

    def export_adapter(self, out: Path, round: int | None = None) -> Path:
        """Copy round `round`'s adapter (default: the last) to the new folder `out`, loadable with
        `PeftModel.from_pretrained`."""
        rounds = self.rounds()
        if not rounds:
            raise StarError(f"{self.path}: no trained round yet: run `star train` first")
        k = rounds[-1]["round"] if round is None else round
        if not 0 <= k < len(rounds):
            raise StarError(f"{self.path}: no round {k} (rounds 0–{len(rounds) - 1})")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise StarError(f"{out} exists and is not empty")
        source = self.adapter_dir(k)
        write_folder(out, lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True), False)
        return out


def _item(row: dict) -> Item:
    choices = tuple(row["choices"]) if row.get("choices") else None
    return Item(row["id"], row["prompt"], row.get("answer"), choices)


def _write_items(path: Path, items: list[Item]) -> None:
    atomic_write(path, "".join(json.dumps(i.to_row(), ensure_ascii=False) + "\n" for i in items))


def model_version(after_round: int | None) -> str:
    """The name a labelling tool shows for the model whose answers it holds."""
    return "star-base" if after_round is None else f"star-round-{after_round}"


def _to_label(example: Example, answer, uncertainty: float) -> ToLabel:
    return ToLabel(
        example.id, example.prompt, example.choices, answer.text, answer.confidence, uncertainty
    )


def _by_llm(row: dict) -> bool:
    return row.get("source") == "llm"


def _sure(row: dict, threshold: float) -> bool:
    """An LLM answer good enough to be a label: in the set, with a confidence that clears the
    threshold (an answer without a confidence never does)."""
    if row["answer"] is None or row["confidence"] is None:
        return False
    return row["confidence"] >= threshold
