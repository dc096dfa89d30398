"""Batches to label, out and back: JSONL, CSV and Label Studio's task-import / JSON-export.

Out: one row per item with the model's current answer (a pre-annotation) and its uncertainty;
the person fills `label`. Back: (line, id, label) triples, whatever the format; rows with an
empty label are not labelled yet and are skipped. Label Studio tasks carry the model's answer
as a prediction, and per-item choices as `options` for a dynamic <Choices>.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from star.errors import BadInputError
from star.tasks.reading import CHOICE_SEPARATOR, raw_rows

FORMATS = ("jsonl", "csv", "label-studio")
SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "label-studio": ".json"}
FROM_NAME, TO_NAME = "label", "prompt"  # control and object names in LABEL_CONFIG

# A Label Studio labelling interface for star batches: free text, plus choices when a task
# has `options` (Label Studio shows a <Choices> with no options as nothing).
LABEL_CONFIG = """<View>
  <Text name="prompt" value="$prompt"/>
  <Choices name="label_choice" toName="prompt" value="$options" choice="single"/>
  <TextArea name="label" toName="prompt" maxSubmissions="1" editable="true"
            placeholder="the answer the model should give"/>
</View>
"""


@dataclass(frozen=True)
class ToLabel:
    id: str
    prompt: str
    choices: tuple[str, ...] | None
    model_answer: str
    confidence: float  # p(model_answer) in [0, 1]: what a labelling tool sorts by
    uncertainty: float  # the strategy's score (why it was chosen); larger is less sure


@dataclass(frozen=True)
class Label:
    line: int  # where it came from, for messages (task index for Label Studio files)
    id: str
    label: str


def render(rows: list[ToLabel], fmt: str, model_version: str) -> str:
    if fmt == "jsonl":
        return "".join(
            json.dumps(
                {
                    "id": r.id,
                    "prompt": r.prompt,
                    **({"choices": list(r.choices)} if r.choices else {}),
                    "model_answer": r.model_answer,
                    "model_confidence": r.confidence,
                    "uncertainty": r.uncertainty,
                    "label": None,
                },
                ensure_ascii=False,
            )
            + "\n"
            for r in rows
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["id", "prompt", "choices", "model_answer", "model_confidence", "uncertainty", "label"]
        )
        for r in rows:
            choices = CHOICE_SEPARATOR.join(r.choices) if r.choices else ""
            confidence, uncertainty = f"{r.confidence:.6g}", f"{r.uncertainty:.6g}"
            writer.writerow([r.id, r.prompt, choices, r.model_answer, confidence, uncertainty, ""])
        return out.getvalue()
    if fmt == "label-studio":
        return json.dumps([ls_task(r, model_version) for r in rows], ensure_ascii=False, indent=1)
    raise ValueError(fmt)


def ls_prediction(row: ToLabel, model_version: str) -> dict:
    """The model's answer as a Label Studio prediction. `score` is a confidence in [0, 1]:
    Label Studio's uncertainty sampling serves the lowest score first, and its Data Manager
    shows it as the prediction score."""
    if row.choices:
        picked = [row.model_answer] if row.model_answer in row.choices else []
        result = {"type": "choices", "from_name": "label_choice", "value": {"choices": picked}}
    else:
        result = {"type": "textarea", "from_name": FROM_NAME, "value": {"text": [row.model_answer]}}
    return {
        "model_version": model_version,
        "score": min(1.0, max(0.0, float(row.confidence))),
        "result": [{**result, "to_name": TO_NAME}],
    }


def ls_task(row: ToLabel, model_version: str) -> dict:
    """One task in Label Studio's import format, the model's answer as its prediction and
    the strategy's uncertainty kept in the task's data (a Data Manager column)."""
    data = {
        "star_id": row.id,
        "prompt": row.prompt,
        "options": [{"value": c} for c in row.choices] if row.choices else [],
        "star_uncertainty": row.uncertainty,
    }
    return {"data": data, "predictions": [ls_prediction(row, model_version)]}


def parse(
    path: Path, id_fields: tuple[str, ...] = ("id",), label_fields: tuple[str, ...] = ("label",)
) -> list[Label]:
    """Labels in a filled-in batch: .jsonl/.csv rows with an id and a label, or a Label Studio
    JSON export (.json: a list of tasks with annotations).

    A row's id and label are its first non-missing column of `id_fields` / `label_fields`, so
    a file written with the pool's own column names (`answer`, say) reads too. A row with an
    empty label is not labelled yet and skipped; a file in which no row has a label is an
    error that names the columns expected and found, never "0 labels imported".
    """
    if path.suffix.lower() == ".json":
        return _parse_label_studio(path)
    labels, rows, columns, blank = [], 0, set(), 0
    for number, row in raw_rows(path):
        rows += 1
        columns.update(row)
        id_, label = _first_of(row, id_fields), _first_of(row, label_fields)
        if not isinstance(id_, str | int) or isinstance(id_, bool) or not str(id_).strip():
            raise BadInputError(f"{path}:{number}: missing or empty field {_either(id_fields)}")
        if label is None or (isinstance(label, str) and not label.strip()):
            blank += label is not None or any(f in row for f in label_fields)
            continue  # not labelled yet
        if not isinstance(label, str | int | float) or isinstance(label, bool):
            raise BadInputError(f"{path}:{number}: field {_either(label_fields)} must be text")
        labels.append(Label(number, str(id_).strip(), str(label).strip()))
    if not labels:
        expected = f"rows with {_either(id_fields)} and {_either(label_fields)}"
        if not rows:
            raise BadInputError(f"{path}: no rows; expected {expected}")
        if not blank:
            names = sorted(columns)
            found = ", ".join(repr(c) for c in names[:10]) + (", …" if len(names) > 10 else "")
            raise BadInputError(f"{path}: no label column; expected {expected}, found {found}")
        raise BadInputError(
            f"{path}: no row is labelled yet ({rows} row(s), {_either(label_fields)} empty)"
        )
    return labels


def _first_of(row: dict, fields: tuple[str, ...]):
    """The value of the first of `fields` that the row has (None if none)."""
    return next((row[f] for f in fields if row.get(f) is not None), None)


def _either(fields: tuple[str, ...]) -> str:
    return " or ".join(repr(f) for f in dict.fromkeys(fields))


def _parse_label_studio(path: Path) -> list[Label]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(tasks, list):
        raise BadInputError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
    labels = []
    for number, task in enumerate(tasks, 1):
        where = f"{path}: task {number}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("star_id"), str):
            raise BadInputError(f"{where}: no data.star_id (was it exported by `star next`?)")
        label = annotation_label(task.get("annotations") or [], where)
        if label is not None:
            labels.append(Label(number, data["star_id"], label))
    return labels


def annotation_label(annotations: list, where: str) -> str | None:
    """The label of the newest submitted (not cancelled) annotation: its choice if it picked
    one, else its text. None if nobody has answered yet."""
    done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    done.sort(key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id", 0)))
    for annotation in reversed(done):
        by_kind: dict[str, str] = {}
        for result in annotation.get("result") or []:
            value = result.get("value", {}) if isinstance(result, dict) else {}
            for kind in ("choices", "text"):
                picked = value.get(kind)
                if isinstance(picked, list) and picked and isinstance(picked[0], str):
                    by_kind.setdefault(kind, picked[0].strip())
        label = by_kind.get("choices") or by_kind.get("text")
        if label:
            return label
    if done:
        raise BadInputError(f"{where}: an annotation without a choice or text")
    return None
