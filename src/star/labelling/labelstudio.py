"""Push a batch to a running Label Studio and pull its annotations, with label-studio-sdk.

The SDK is an optional extra (`pip install 'star-al[label-studio]'`), imported only here.
Pulled annotations are saved as Label Studio's JSON export in the project and imported like
any other labels file, so pulling twice changes nothing and a pull can be replayed offline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from star.errors import StarError, first_line
from star.labelling.formats import LABEL_CONFIG


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str
    timeout: float = 30.0  # seconds per answer; the SDK's 60 leaves a user staring too long

    @classmethod
    def from_options(
        cls, url: str | None, api_key: str | None, timeout: float | None = None
    ) -> Server:
        url = url or os.environ.get("LABEL_STUDIO_URL")
        api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
        if not url or not api_key:
            raise StarError(
                "Label Studio needs --ls-url and --ls-api-key (or LABEL_STUDIO_URL and "
                "LABEL_STUDIO_API_KEY)"
            )
        if timeout is None:
            text = os.environ.get("LABEL_STUDIO_TIMEOUT", "30")
            try:
                timeout = float(text)
            except ValueError:
                raise StarError(f"LABEL_STUDIO_TIMEOUT must be seconds, got {text!r}") from None
        if not timeout > 0:
            raise StarError(f"the Label Studio timeout must be positive, got {timeout}")
        return cls(url.rstrip("/"), api_key, timeout)

    def client(self):
        try:
            from label_studio_sdk import LabelStudio
        except ImportError:
            raise StarError(
                "talking to Label Studio needs the SDK: pip install 'star-al[label-studio]'"
            ) from None
        return LabelStudio(base_url=self.url, api_key=self.api_key, timeout=self.timeout)


def _call(what: str, fn):
    """One SDK call; connection and API failures become one-line errors."""
    try:
        return fn()
    except StarError:
        raise
    except Exception as e:  # httpx / SDK ApiError: no common base worth importing
        raise StarError(f"Label Studio: {what} failed: {first_line(e)[:200]}") from None


# what star asks of a project: show annotators the model's answer, serve the least confident
# task first (Label Studio's uncertainty sampling orders by the current model version's score)
SETTINGS = {"show_collab_predictions": True, "sampling": "Uncertainty sampling"}


def push(
    server: Server, tasks_file: Path, project_id: int | None, title: str
) -> tuple[int, int, int]:
    """Import the tasks of a `star next --format label-studio` file that the project does not
    hold yet (by star id: pushing twice duplicates nothing); creates a project with star's
    labelling interface when no id is given, and points the project at this batch's model
    version. Returns (Label Studio project id, tasks imported, tasks already there)."""
    tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    version = next((p["model_version"] for t in tasks for p in t.get("predictions", [])), None)
    ls = server.client()
    if project_id is None:
        project = _call(
            "creating a project",
            lambda: ls.projects.create(title=title, label_config=LABEL_CONFIG, **SETTINGS),
        )
        project_id = project.id
    held = {t.data.get("star_id") for t in _tasks(ls, project_id)}
    new = [t for t in tasks if t["data"]["star_id"] not in held]
    if new:
        _call(
            "importing tasks",
            lambda: ls.projects.import_tasks(id=project_id, request=new, return_task_ids=True),
        )
    if version is not None:
        _point(ls, project_id, version)
    return project_id, len(new), len(tasks) - len(new)


def refresh(server: Server, project_id: int, answer) -> tuple[int, str | None]:
    """Replace the predictions of the project's tasks that nobody has annotated yet with the
    current model's answers. `answer(star ids)` -> (model version, ToLabel rows). Returns
    (tasks refreshed, the model version now shown)."""
    from star.labelling.formats import ls_prediction

    ls = server.client()
    waiting = [t for t in _tasks(ls, project_id) if "star_id" in t.data and not _done(t)]
    if not waiting:
        return 0, None
    version, rows = answer([t.data["star_id"] for t in waiting])
    for task, row in zip(waiting, rows, strict=True):
        for old in task.predictions or []:
            old_id = old["id"] if isinstance(old, dict) else old.id
            _call("removing an old prediction", lambda i=old_id: ls.predictions.delete(id=i))
        prediction = ls_prediction(row, version)
        _call(
            "adding a prediction",
            lambda t=task, p=prediction: ls.predictions.create(task=t.id, **p),
        )
    _point(ls, project_id, version)
    return len(waiting), version


def _done(task) -> bool:
    """Annotated by someone (a skipped task is still waiting for a label)."""
    for a in task.annotations or []:
        cancelled = a.get("was_cancelled") if isinstance(a, dict) else a.was_cancelled
        if not cancelled:
            return True
    return False


def _tasks(ls, project_id: int) -> list:
    return _call("listing tasks", lambda: list(ls.tasks.list(project=project_id, fields="all")))


def _point(ls, project_id: int, version: str) -> None:
    """The project's current model version (what uncertainty sampling and the Data Manager's
    score column read) and star's settings, reapplied to projects made elsewhere."""
    _call(
        "setting the model version",
        lambda: ls.projects.update(id=project_id, model_version=version, **SETTINGS),
    )


def pull(server: Server, project_id: int, out: Path) -> Path:
    """Save the project's JSON export (tasks with their annotations) to `out`."""
    from star.files import atomic_write

    ls = server.client()
    exported = _call("exporting annotations", lambda: ls.projects.exports.as_json(project_id))
    atomic_write(out, json.dumps(exported, ensure_ascii=False))
    return out
