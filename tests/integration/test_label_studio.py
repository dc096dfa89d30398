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

    ls = LabelStudio(base_url=server, api_key=token)
    tasks = list(ls.tasks.list(project=pid, fields="all"))
    assert sorted(t.data["star_id"] for t in tasks) == sorted(exported)
    assert all(t.predictions for t in tasks)  # the model's answer is pre-annotated
    # the prediction's score is a confidence; the strategy's uncertainty stays in the data
    scores = {t.id: _prediction(t)["score"] for t in tasks}
    assert all(0 < x <= 1 for x in scores.values()) and len(set(scores.values())) == 3
    assert all(isinstance(t.data["star_uncertainty"], float) for t in tasks)
    settings = ls.projects.get(id=pid)
    assert settings.model_version == "star-base" and settings.show_collab_predictions
    assert settings.sampling == "Uncertainty sampling"
    # so the task Label Studio hands an annotator first is the least confident one
    assert _next_task(server, token, pid) == min(scores, key=scores.get)

    # pushing the same batch again duplicates nothing
    capsys.readouterr()
    assert main(["push", str(project), *ls_args]) == 0
    assert "0 new task(s), 3 already there" in capsys.readouterr().out
    assert len(list(ls.tasks.list(project=pid))) == 3

    # a person answers in Label Studio: two tasks labelled, one skipped
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

    # after a round of training, the tasks still waiting (the skipped one and the two new
    # ones) show the new round's answers, one prediction each; labelled tasks keep theirs
    assert main(["train", str(project)]) == 0
    capsys.readouterr()
    assert main(["push", str(project), "--refresh", *ls_args]) == 0
    assert "refreshed 3 unlabelled task(s)" in capsys.readouterr().out
    after = {t.data["star_id"]: t for t in ls.tasks.list(project=pid, fields="all")}
    for star_id, task in after.items():
        versions = [_version(p) for p in task.predictions]
        assert versions == (["star-base"] if star_id in answers else ["star-round-0"])
    assert ls.projects.get(id=pid).model_version == "star-round-0"
    with Project.open(project) as p:
        version, rows = p.preannotate(sorted(i for i in after if i not in answers))
    assert version == "star-round-0"
    for row in rows:
        assert _prediction(after[row.id])["score"] == pytest.approx(row.confidence)
    # refreshing again changes no count
    assert main(["push", str(project), "--refresh", *ls_args]) == 0
    assert all(len(t.predictions) == 1 for t in ls.tasks.list(project=pid, fields="all"))


def _prediction(task) -> dict:
    (p,) = task.predictions
    return p if isinstance(p, dict) else p.dict()


def _version(p) -> str:
    return p["model_version"] if isinstance(p, dict) else p.model_version


def _next_task(server: str, token: str, pid: int) -> int:
    """The task Label Studio's labelling stream serves this annotator next."""
    import httpx

    reply = httpx.get(
        f"{server}/api/projects/{pid}/next/", headers={"Authorization": f"Token {token}"}
    )
    reply.raise_for_status()
    return reply.json()["id"]
