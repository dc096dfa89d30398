"""A real Label Studio (its own venv, 127.0.0.1, throw-away data dir): star pushes a batch,
a person answers through the API, star pulls the answers in; `make test-integration`."""

import json
from pathlib import Path

import pytest

from star.cli import main
from star.labelling.project import Project

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reviews"
FAST = ["--model", "tiny-random", "--lora-r", "4", "--epochs", "1", "--batch-size", "4"]


def test_push_annotate_pull(server, token, tmp_path, capsys):
    from label_studio_sdk import LabelStudio

    project = tmp_path / "proj"
    ls_args = ["--ls-url", server, "--ls-api-key", token]
    assert main(["init", str(project), "--pool", str(EXAMPLES / "pool.jsonl"), *FAST]) == 0
    assert main(["next", str(project), "--k", "3", "--format", "label-studio"]) == 0
    assert main(["push", str(project), *ls_args]) == 0
    with Project.open(project) as p:
        pid = p.label_studio_project(server)
        exported = p.batch(None)["ids"]

    # a person answers in Label Studio: two tasks labelled, one skipped
    ls = LabelStudio(base_url=server, api_key=token)
    tasks = list(ls.tasks.list(project=pid, fields="all"))
    assert sorted(t.data["star_id"] for t in tasks) == sorted(exported)
    assert all(t.predictions for t in tasks)  # the model's answer is pre-annotated
    answers = {}
    for n, task in enumerate(sorted(tasks, key=lambda t: t.id)):
        answer = "positive" if n == 0 else "negative"
        result = [
            {
                "from_name": "label_choice",
                "to_name": "prompt",
                "type": "choices",
                "value": {"choices": [answer]},
            }
        ]
        ls.annotations.create(id=task.id, result=result, was_cancelled=n == 2)
        if n < 2:
            answers[task.data["star_id"]] = answer

    capsys.readouterr()
    assert main(["pull", str(project), *ls_args]) == 0
    assert "imported 2 label(s)" in capsys.readouterr().out
    assert main(["pull", str(project), *ls_args]) == 0  # again: nothing changes
    assert "imported 0 label(s), 2 already recorded" in capsys.readouterr().out
    with Project.open(project) as p:
        assert p.labels() == answers
        saved = json.loads((project / "imports" / f"label-studio-{pid}.json").read_text())
        assert len(saved) == 3

    # the next batch goes into the same Label Studio project
    assert main(["next", str(project), "--k", "2", "--format", "label-studio"]) == 0
    assert main(["push", str(project), *ls_args]) == 0
    assert len(list(ls.tasks.list(project=pid))) == 5
