"""A real Label Studio (its own venv, 127.0.0.1, throw-away data dir): star pushes a batch,
a person answers through the API, star pulls the answers in; `make test-integration`."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from star.cli import main
from star.project import Project

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reviews"
TOKEN = "star0integration0token0123456789abcdef0"
FAST = ["--model", "tiny-random", "--lora-r", "4", "--epochs", "1", "--batch-size", "4"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = os.environ.get("LABEL_STUDIO_BIN")
    if not binary:
        pytest.fail("LABEL_STUDIO_BIN is not set: run `make test-integration`")
    home = tmp_path_factory.mktemp("ls")
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),  # Label Studio writes ~/.config and ~/.local even for --help
        "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"),
        "LABEL_STUDIO_USERNAME": "annotator@example.com",
        "LABEL_STUDIO_PASSWORD": "annotator-password",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # fixed when the org is created
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [
            binary,
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(home / "data"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # the first start runs the database migrations (~1 min)
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if b"UP" in r.read():
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("Label Studio did not start:\n" + (home / "server.log").read_text()[-2000:])
        time.sleep(1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    log.close()


def test_push_annotate_pull(server, tmp_path, capsys):
    from label_studio_sdk import LabelStudio

    project = tmp_path / "proj"
    ls_args = ["--ls-url", server, "--ls-api-key", TOKEN]
    assert main(["init", str(project), "--pool", str(EXAMPLES / "pool.jsonl"), *FAST]) == 0
    assert main(["next", str(project), "--k", "3", "--format", "label-studio"]) == 0
    assert main(["push", str(project), *ls_args]) == 0
    with Project.open(project) as p:
        pid = p.label_studio_project(server)
        exported = p.batch(None)["ids"]

    # a person answers in Label Studio: two tasks labelled, one skipped
    ls = LabelStudio(base_url=server, api_key=TOKEN)
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
