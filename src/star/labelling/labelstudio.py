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

from star.errors import StarError
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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StarError(f"Label Studio: {what} failed: {first[:200]}") from None


def push(server: Server, tasks_file: Path, project_id: int | None, title: str) -> int:
    """Import the tasks of a `star next --format label-studio` file; creates a project with
    star's labelling interface when no id is given. Returns the Label Studio project id."""
    tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    ls = server.client()
    if project_id is None:
        project = _call(
            "creating a project",
            lambda: ls.projects.create(title=title, label_config=LABEL_CONFIG),
        )
        project_id = project.id
    _call(
        "importing tasks",
        lambda: ls.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True),
    )
    return project_id


def pull(server: Server, project_id: int, out: Path) -> Path:
    """Save the project's JSON export (tasks with their annotations) to `out`."""
    from star.files import atomic_write

    ls = server.client()
    exported = _call("exporting annotations", lambda: ls.projects.exports.as_json(project_id))
    atomic_write(out, json.dumps(exported, ensure_ascii=False))
    return out
