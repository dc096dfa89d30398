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
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml

from star import __version__, stopping
from star import config as cfg
from star.data import Encoded
from star.errors import BadInputError, EmptyPoolError, RunDirError, StarError
from star.formats import SUFFIX, Label, ToLabel, parse, render
from star.pool import Fields, Item, read_items
from star.state import atomic_write, lock_dir, save_adapter_to, write_jsonl
from star.strategies import STRATEGIES, configure
from star.streams import LORA, MC, SELECT, SUBSAMPLE, TRAIN, derived_seed, stop_set
from star.tasks import normalised_text

if TYPE_CHECKING:  # the engine is imported when a command needs it: status stays quick
    from star.evaluate import Answer, Prediction
    from star.signals import SignalSettings

log = logging.getLogger(__name__)


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """One append of whole lines, then fsync: a crash leaves at most a cut last line, which
    the next append cuts off before writing (readers already ignore it). A write that fails
    (a full disk) is cut back off, so no part of the rows is recorded."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if not data:
        return
    with open(path, "ab+") as f:
        f.seek(0)
        old = f.read()
        kept = old.rfind(b"\n") + 1  # 0 when the only line was cut
        if len(old) != kept:
            f.truncate(kept)
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            f.truncate(kept)  # needs no space
            raise


def read_journal(path: Path) -> list[dict]:
    """Complete lines of a journal; a last line without its newline (a cut write) is dropped."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # the part after the last newline is cut or empty
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise RunDirError(f"{path}:{number}: damaged journal line") from None
    return rows


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
        from star import model as models

        models.check_causal_lm(settings.run.model.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            atomic_write(tmp / "project.yaml", yaml.safe_dump(settings.to_dict(), sort_keys=False))
            _write_items(tmp / "pool.jsonl", [Item(i.id, i.prompt, None, i.choices) for i in items])
            if evals:
                _write_items(tmp / "eval.jsonl", evals)
            append_jsonl(
                tmp / "labels.jsonl",
                ({"id": i, "label": a, "source": "init"} for i, a in labels.items()),
            )
            if path.exists():
                path.rmdir()
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

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

    def labels(self) -> dict[str, str]:
        """id -> label of every labelled item (the last import of an id wins)."""
        return {r["id"]: r["label"] for r in read_journal(self.path / "labels.jsonl")}

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

    def _stop_predictions(self, model, tok, budget: int) -> list[dict]:
        ids = self.stop_ids()
        if not ids:
            return []
        pool = {i.id: i for i in self.pool()}
        said = self._answers(model, tok, [pool[i] for i in ids], budget, self.answer_length(tok))
        predictions = stopping.RoundPredictions(
            [a.text for a in said], [a.uncertainty for a in said]
        )
        return stopping.to_rows(ids, predictions)

    # ------------------------------------------------------------------ labels
    def import_labels(
        self, file: Path, relabel: bool = False, allow_unexported: bool = False
    ) -> dict[str, int]:
        """Check every label in `file` first, then append the new ones in one write.

        Importing the same file twice changes nothing. A label for an id never exported, or
        one that differs from the recorded label, is refused unless the flag allows it.
        """
        pool = {i.id: i for i in self.pool()}
        labels, exported = self.labels(), {i for b in self.batches() for i in b["ids"]}
        new: dict[str, Label] = {}
        unchanged = 0
        fields = self.settings.fields
        for lab in parse(file, ("id", fields.id), ("label", fields.answer)):
            where = f"{file}:{lab.line}" if file.suffix != ".json" else f"{file}: task {lab.line}"
            item = pool.get(lab.id)
            if item is None:
                raise BadInputError(f"{where}: id {lab.id!r} is not in the project's pool")
            if item.choices and lab.label not in item.choices:
                raise BadInputError(
                    f"{where}: label {lab.label!r} for {lab.id!r} is not one of "
                    f"{list(item.choices)}"
                )
            if lab.id in new and new[lab.id].label != lab.label:
                raise BadInputError(
                    f"{where}: {lab.id!r} is labelled twice in this file, differently"
                )
            if labels.get(lab.id) == lab.label:
                unchanged += 1
                continue
            if lab.id in labels and not relabel:
                raise BadInputError(
                    f"{where}: {lab.id!r} is already labelled {labels[lab.id]!r}, not "
                    f"{lab.label!r}; pass --relabel to replace it"
                )
            if lab.id not in exported and lab.id not in labels and not allow_unexported:
                raise BadInputError(
                    f"{where}: {lab.id!r} was never exported by `star next`; pass "
                    "--allow-unexported to accept it"
                )
            new[lab.id] = lab
        append_jsonl(
            self.path / "labels.jsonl",
            ({"id": i, "label": lab.label, "source": str(file)} for i, lab in new.items()),
        )
        return {"imported": len(new), "unchanged": unchanged}

    # ------------------------------------------------------------------ model work
    def _load(self):
        from star import model as models

        base, tok = models.load(self.settings.run.model)
        budget = models.batch_tokens(self.settings.run.inference.batch_tokens, models.device())
        return base, tok, budget

    def _encode(self, tok, prompts: list[str], targets: list[str]) -> list[Encoded]:
        d = self.settings.run.data
        p = tok(prompts, add_special_tokens=False)["input_ids"] if prompts else []
        t = tok(targets, add_special_tokens=False)["input_ids"] if targets else []
        return [
            Encoded(a[-d.max_prompt_tokens :], b[: d.max_target_tokens])
            for a, b in zip(p, t, strict=True)
        ]

    def _answers(self, model, tok, items: list[Item], budget: int, length: int) -> list[Answer]:
        """The model's label-free answer to each item, by the rule a simulated run uses."""
        from star.evaluate import end_if_prefix, label_free_answers

        def spelled(choices: tuple[str, ...]) -> list[list[int]]:  # as training spells a label
            ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
            return end_if_prefix(ids, tok.eos_token_id)

        return label_free_answers(
            model,
            tok,
            self._encode(tok, [i.prompt for i in items], [""] * len(items)),
            [(i.choices, spelled(i.choices)) if i.choices else None for i in items],
            length,
            self.settings.run.inference.eval_batch_size,
            budget,
        )

    def _adapted(self, base, round: int | None):
        """The base model with round `round`'s adapter (None: no adapter yet)."""
        if round is None:
            return None
        from peft import PeftModel

        return PeftModel.from_pretrained(base, self.adapter_dir(round)).eval()

    def adapter_dir(self, round: int) -> Path:
        """Where round `round`'s PEFT adapter is saved."""
        return self.path / "rounds" / f"{round:03d}" / "adapter"

    def train(self) -> dict:
        """A fresh adapter on every label so far (as the paper retrains each round), then
        evaluation if the project has an eval file; the metrics line commits the round."""
        run = self.settings.run
        labels, pool = self.labels(), {i.id: i for i in self.pool()}
        if not labels:
            raise EmptyPoolError(f"{self.path}: no labels yet: import some with `star label`")
        k = len(self.rounds())
        base, tok, budget = self._load()
        ids = sorted(labels)
        items = [
            Encoded(x.prompt_ids, x.target_ids + [tok.eos_token_id])
            for x in self._encode(tok, [pool[i].prompt for i in ids], [labels[i] for i in ids])
        ]
        from star import model as models
        from star.evaluate import summarise
        from star.train import train_adapter

        model = models.attach_lora(base, run.lora, derived_seed(run.seed, k, LORA))
        loss = train_adapter(
            model, items, tok.pad_token_id, run.train, derived_seed(run.seed, k, TRAIN)
        )
        save_adapter_to(model, self.adapter_dir(k))
        row = {"round": k, "n_labeled": len(items), "train_loss": loss}
        evals = self.eval_items()
        if evals:
            row |= summarise(self._evaluate(model, tok, evals, budget))
        stop_rows = self._stop_predictions(model, tok, budget)
        if stop_rows:
            write_jsonl(self.adapter_dir(k).parent / "stop.jsonl", stop_rows)
        append_jsonl(self.path / "rounds.jsonl", [row])  # commits the round
        return row

    def _evaluate(self, model, tok, evals: list[Item], budget: int) -> list[Prediction]:
        from star.evaluate import Prediction

        answers = self._answers(model, tok, evals, budget, self.settings.max_new_tokens)
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

    def next(self, k: int, fmt: str = "jsonl", out: Path | None = None) -> tuple[Path, int, int]:
        """Select up to k items to label and write them with the model's answers; returns
        (file, how many, how many were left).

        Only what the strategy reads is computed (`random` runs no forward pass over the
        candidates), and the model answers only the chosen items unless the strategy needed
        every candidate's answer anyway.
        """
        from star import model as models
        from star.cache import signal_root
        from star.signals import PoolSignals, base_cache, subsample

        run, rounds = self.settings.run, self.rounds()
        labels, pending = self.labels(), self.pending()
        candidates = [i for i in self.pool() if i.id not in labels and i.id not in pending]
        if not candidates:
            raise EmptyPoolError(
                f"{self.path}: nothing left to select: every pool item is labelled or waiting "
                f"in a batch ({len(pending)} waiting)"
            )
        last = len(rounds) - 1 if rounds else None
        seed_round = len(rounds)
        subset = torch.Generator().manual_seed(derived_seed(run.seed, seed_round, SUBSAMPLE))
        candidates = [
            candidates[i]
            for i in subsample(
                len(candidates),
                run.loop.max_candidates if STRATEGIES[run.strategy].reads_model else None,
                subset,
            )
        ]
        base, tok, budget = self._load()
        # labelled or waiting in a batch: a spreading selector counts both as covered
        done = [i.prompt for i in self.pool() if i.id in labels or i.id in pending]
        tuned = self._adapted(base, last)
        model = tuned if tuned is not None else base
        length = self.answer_length(tok)
        said: dict[int, Answer] = {}  # the model's answers, by candidate position

        def answer(m, positions: list[int], of_base: bool) -> list[list[int]]:
            got = self._answers(m, tok, [candidates[i] for i in positions], budget, length)
            if not of_base:
                said.update(zip(positions, got, strict=True))
            return [x.target_ids for x in self._encode(tok, [""] * len(got), [a.text for a in got])]

        source = PoolSignals(
            model,
            self._encode(tok, [c.prompt for c in candidates], [""] * len(candidates)),
            tok.pad_token_id,
            self._signal_settings(tok, budget, seed_round, length, merge=tuned is not None),
            answer,
            lambda kind: base_cache(
                signal_root(models.cache_dir()) if run.inference.signal_cache else None,
                base,
                next(base.parameters()).dtype,
                self._signal_settings(tok, budget, seed_round, length),
                kind,
            ),
            answer_keys=[
                tok("\x1f".join(c.choices), add_special_tokens=False)["input_ids"]
                if c.choices
                else []
                for c in candidates
            ],
            labeled=[x.prompt_ids for x in self._encode(tok, done, [""] * len(done))],
        )
        signals = source.signals(
            max(0, seed_round - 1),
            torch.Generator().manual_seed(derived_seed(run.seed, seed_round, SELECT)),
            dynamic_w0=run.uncertainty.dynamic_w0,
            dynamic_step=run.uncertainty.dynamic_step,
            star_measure=run.uncertainty.star_measure,
        )
        chosen = STRATEGIES[run.strategy].choose(signals, [c.id for c in candidates], k)
        position = {c.id: i for i, c in enumerate(candidates)}
        todo = [position[s.id] for s in chosen if position[s.id] not in said]
        if todo:
            with models.merged(model, tuned is not None and self._merge()):
                got = self._answers(model, tok, [candidates[i] for i in todo], budget, length)
            said.update(zip(todo, got, strict=True))
        rows = [
            ToLabel(s.id, candidates[i].prompt, candidates[i].choices, said[i].text, s.score)
            for s, i in ((s, position[s.id]) for s in chosen)
        ]
        number = len(self.batches())
        out = out or self.path / "exports" / f"batch-{number:03d}{SUFFIX[fmt]}"
        atomic_write(out, render(rows, fmt, f"star-round-{last}"))
        append_jsonl(
            self.path / "batches.jsonl",
            [{"batch": number, "ids": [r.id for r in rows], "file": str(out), "after_round": last}],
        )
        return out, len(rows), len(candidates)

    def _merge(self) -> bool:
        from star import model as models

        return models.merge_pays(self.settings.run.inference.merge_lora, models.device())

    def _signal_settings(
        self, tok, budget: int, seed_round: int, length: int, merge: bool = False
    ) -> SignalSettings:
        u = self.settings.run.uncertainty
        from star import model as models
        from star.signals import SignalSettings

        return SignalSettings.of(
            u,
            target="generated",  # people have no gold answers
            batch_tokens=budget,
            mc_seed=derived_seed(self.settings.run.seed, seed_round, MC),
            merge=merge and self._merge(),
            answer_kind=f"project:{length}",
            start_id=models.start_id(tok),
        )

    def answer_length(self, tok) -> int:
        """New tokens to generate for a free answer (`generate.answer_length`)."""
        values = set(self.labels().values())
        longest = max(
            (len(tok(v, add_special_tokens=False)["input_ids"]) for v in values), default=None
        )
        from star.generate import answer_length

        return answer_length(longest, self.settings.max_new_tokens)

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
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            shutil.copytree(self.adapter_dir(k), tmp, dirs_exist_ok=True)
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out


def _item(row: dict) -> Item:
    choices = tuple(row["choices"]) if row.get("choices") else None
    return Item(row["id"], row["prompt"], row.get("answer"), choices)


def _write_items(path: Path, items: list[Item]) -> None:
    atomic_write(path, "".join(json.dumps(i.to_row(), ensure_ascii=False) + "\n" for i in items))
