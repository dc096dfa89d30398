"""`star annotate` against a real OpenAI-compatible server: llama.cpp's, from the xllamacpp
wheel, serving the embedded SmolLM2 GGUF on 127.0.0.1 (one thread, started and stopped here).
The server logs one line per completion it runs, which is how requests are counted."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from star.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "reviews"
FAST = ["--model", "tiny-random", "--lora-r", "4", "--epochs", "1", "--batch-size", "4"]
KEY = "test-key"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# scripts/embedded_llm.py's server in a process of its own, logging one line per completion
SERVE = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from embedded_llm import serve
server, url = serve(api_key=sys.argv[2], verbosity=3)
print("READY", url, flush=True)
while True:
    time.sleep(3600)
"""


class Llm:
    """The running server: its URL and how many completions it has run."""

    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def completions(self) -> int:
        return self.log.read_text(errors="replace").count("processing task")


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    log = tmp_path_factory.mktemp("llm") / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(SCRIPTS), KEY],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )  # fmt: skip
    line = proc.stdout.readline()
    assert line.startswith("READY"), log.read_text()[-2000:]
    yield Llm(proc, line.split()[1], log)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "reviews"
    assert main(["init", str(path), "--pool", str(EXAMPLES / "pool.jsonl"), *FAST]) == 0
    assert main(["next", str(path), "--k", "6"]) == 0
    return path


def _ask(llm, project, *extra, key=KEY):
    return [
        "annotate", str(project), "--base-url", llm.url, "--llm-model", "smollm2",
        "--api-key", key, *map(str, extra),
    ]  # fmt: skip


def _journal(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_killed_mid_batch_it_resumes_without_asking_twice(llm, project, tmp_path, capsys):
    before = llm.completions()
    flag = tmp_path / "crashed"
    env = {**os.environ, "STAR_CRASH_AT": "annotate answer:3", "STAR_CRASH_FLAG": str(flag)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "star", *_ask(llm, project, "--threshold", 0.6)], env=env
    )
    deadline = time.time() + 300
    while not flag.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert flag.exists(), "never reached the third answer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _journal(project / "llm.jsonl")
    assert len(first) == 3
    assert llm.completions() - before == sum(a["requests"] for a in first)

    capsys.readouterr()
    assert main(_ask(llm, project, "--threshold", 0.6)) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"asked 3 item\(s\) in \d+ request\(s\), [\d,]+ tokens \(3 answered before\)", out
    )
    answers = _journal(project / "llm.jsonl")
    asked = sum(a["requests"] for a in answers)
    assert llm.completions() - before == asked  # every waiting item asked exactly once
    assert sorted(a["id"] for a in answers) == sorted(set(a["id"] for a in answers))
    assert len(answers) == 6
    for a in answers:
        assert a["answer"] in ("positive", "negative") or a["answer"] is None
        assert a["model"] == "smollm2" and a["prompt_version"] == "star-annotate-2"
        assert a["requests"] in (1, 3) and a["scoring"] == "auto"  # 2 labels: 1 + 2 at most
        assert a["tokens"] > 0 and (a["confidence"] is None or 0 < a["confidence"] <= 1)

    # routing: sure answers are labels with provenance, the rest a people's batch
    labels = _journal(project / "labels.jsonl")
    sure = {a["id"] for a in answers if a["confidence"] is not None and a["confidence"] >= 0.6}
    assert {r["id"] for r in labels} == sure
    assert all(r["source"] == "llm" and r["annotator"] == llm.url for r in labels)
    batches = _journal(project / "batches.jsonl")
    if len(sure) < 6:
        review = batches[-1]
        assert review["reviews"] == 0 and sorted(review["ids"]) == sorted(
            a["id"] for a in answers if a["id"] not in sure
        )
        rows = [json.loads(x) for x in Path(review["file"]).read_text().splitlines()]
        by_id = {a["id"]: a for a in answers}
        assert all(r["model_answer"] == (by_id[r["id"]]["answer"] or "") for r in rows)
    # again: nothing asked, nothing added
    assert main(_ask(llm, project, "--threshold", 0.6)) == 0
    assert llm.completions() - before == asked
    assert len(_journal(project / "labels.jsonl")) == len(labels)
    assert len(_journal(project / "batches.jsonl")) == len(batches)


def _unchanged(project: Path):
    files = ("llm.jsonl", "labels.jsonl", "batches.jsonl")
    return {f: (project / f).read_bytes() if (project / f).exists() else b"" for f in files}


class _Garbage(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{not json")

    def log_message(self, *args):
        pass


class _OffTheSet(_Garbage):
    """A well-formed chat completion whose answer is no label of any set, without log-probs."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": "banana"}}]}  # fmt: skip
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serve(handler):
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def garbage():
    server = _serve(_Garbage)
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


@pytest.fixture
def off_the_set():
    server = _serve(_OffTheSet)
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


@pytest.mark.parametrize(
    "case,message",
    [
        ("no key", "refused the API key (401)"),
        ("down", "cannot connect: is the server running"),
        ("timeout", "no answer in time"),
        ("garbage", "an unreadable reply"),
        ("wrong url", "not found (404): check --base-url"),
        (
            "off the set",
            "none of its 6 answer(s) was usable (no label of the set, or nothing: "
            "it said 'banana' to",
        ),
    ],
)
def test_a_bad_endpoint_is_one_line_and_changes_nothing(
    llm, project, garbage, off_the_set, capsys, case, message
):
    args = _ask(llm, project, "--retries", 0)
    if case == "no key":
        args = _ask(llm, project, "--retries", 0, key="wrong")
    elif case == "down":
        args[args.index("--base-url") + 1] = "http://127.0.0.1:9/v1"
    elif case == "timeout":
        args += ["--timeout", "0.001"]
    elif case == "wrong url":
        args[args.index("--base-url") + 1] = llm.url.removesuffix("/v1") + "/no/such/v1"
    elif case == "off the set":
        args[args.index("--base-url") + 1] = off_the_set
    else:
        args[args.index("--base-url") + 1] = garbage
    before = _unchanged(project)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("star: error: the LLM endpoint ") and err.count("\n") == 1
    assert message in err
    assert _unchanged(project) == before


def test_dry_run_asks_nothing(llm, project, capsys):
    before = llm.completions()
    capsys.readouterr()
    assert main(_ask(llm, project, "--dry-run")) == 0
    assert capsys.readouterr().out.startswith("would make 6 to 18 request(s) to ")
    assert llm.completions() == before and not (project / "llm.jsonl").exists()


def test_routing_and_people_winning_from_a_journal_of_answers(project, capsys):
    """Answers already journaled are not asked again: routing alone, no server needed."""
    from star.labelling.annotator import PROMPT_VERSION, Endpoint
    from star.labelling.project import Project

    endpoint = Endpoint.from_options("http://127.0.0.1:9/v1", "m")
    source = {"annotator": endpoint.base_url, "model": "m", "prompt_version": PROMPT_VERSION,
              "scoring": "auto"}  # fmt: skip
    with Project.open(project) as p:
        ids = p.batch(0)["ids"]
        said = [("positive", 0.95), ("negative", 0.9), ("negative", 0.89), (None, None),
                ("positive", None), ("positive", 0.2)]  # fmt: skip
        rows = [
            {"id": i, "answer": a, "confidence": c, "tokens": 9} | source
            for i, (a, c) in zip(ids, said, strict=True)
        ]
        (project / "llm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        done = p.annotate(endpoint, threshold=0.9)
        review_file = str(project / "exports" / "batch-001.jsonl")
        assert done == {"asked": 0, "answered_before": 6, "tokens": 0, "requests": 0,
                        "accepted": 2, "to_people": 4, "left": 0, "file": review_file}  # fmt: skip
        assert p.labels() == {ids[0]: "positive", ids[1]: "negative"}
        assert p.labelled_by() == {"people": 0, "llm": 2}
        review = [json.loads(x) for x in Path(done["file"]).read_text().splitlines()]
        assert [(r["id"], r["model_answer"], r["model_confidence"]) for r in review] == [
            (ids[2], "negative", 0.89), (ids[3], "", 0.0), (ids[4], "positive", 0.0),
            (ids[5], "positive", 0.2),
        ]  # fmt: skip
        assert p.annotate(endpoint, threshold=0.9)["file"] == done["file"]  # no second batch
    # a person disagrees with the LLM: their label replaces it, no --relabel needed
    person = project / "person.jsonl"
    person.write_text(json.dumps({"id": ids[0], "label": "negative"}) + "\n")
    assert main(["label", str(project), str(person)]) == 0
    capsys.readouterr()
    assert main(["status", str(project)]) == 0
    assert "2 labelled (1 by people, 1 by an LLM)" in capsys.readouterr().out
    with Project.open(project) as p:
        assert p.labels()[ids[0]] == "negative"


@pytest.mark.parametrize("budget", ["--max-tokens", "--max-requests"])
def test_a_budget_is_checked_before_each_item_and_the_rest_waits(llm, project, capsys, budget):
    before = llm.completions()
    capsys.readouterr()
    assert main(_ask(llm, project, budget, 1)) == 0  # spent by the first item
    out = capsys.readouterr().out
    assert out.startswith("asked 1 item(s) in ") and "5 item(s) still to ask" in out
    [answer] = _journal(project / "llm.jsonl")
    assert llm.completions() - before == answer["requests"]


def test_labels_sharing_a_first_token_are_scored_one_request_each(llm, tmp_path, capsys):
    """ "very good" and "very bad" begin alike: the first token cannot tell them apart, so each
    item is asked once, then once per label (P(True) from the server's yes/no log-probs)."""
    pool = tmp_path / "pool.jsonl"
    rows = [{"id": f"q{i}", "prompt": f"Review: {text}\nHow was it? Answer:",
             "choices": ["very good", "very bad"]}
            for i, text in enumerate(["Loved every minute.", "Broke on day one."])]  # fmt: skip
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "shared"
    assert main(["init", str(path), "--pool", str(pool), *FAST]) == 0
    assert main(["next", str(path), "--k", "2"]) == 0
    before = llm.completions()
    capsys.readouterr()
    assert main(_ask(llm, path, "--threshold", 0.99)) == 0
    answers = _journal(path / "llm.jsonl")
    assert len(answers) == 2 and all(a["scoring"] == "auto" for a in answers)
    assert llm.completions() - before == sum(a["requests"] for a in answers)
    for a in answers:
        assert a["requests"] == 3, a  # the unclear first read, then one per label
        assert a["answer"] in ("very good", "very bad") and 0 <= a["confidence"] <= 1
    assert "asked 2 item(s) in 6 request(s)" in capsys.readouterr().out


def test_unusable_answers_before_the_first_usable_one_are_kept_once_it_comes(project, monkeypatch):
    """Held back only while the endpoint has given nothing usable: once a label of the set
    arrives, the earlier unusable answers are journaled too (and go to people)."""
    from types import SimpleNamespace

    from star.labelling.annotator import Endpoint
    from star.labelling.project import Project

    replies = iter(["banana", "banana", "banana", "positive", "negative", "banana"] * 3)

    def create(messages, **_):
        said = "" if "Proposed label" in messages[-1]["content"] else next(replies)
        message = SimpleNamespace(content=said)
        usage = SimpleNamespace(prompt_tokens=5, completion_tokens=1)
        return SimpleNamespace(
            choices=[SimpleNamespace(message=message, logprobs=None)], usage=usage
        )

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    monkeypatch.setattr(Endpoint, "client", lambda self: client)
    endpoint = Endpoint.from_options("http://127.0.0.1:9/v1", "m")
    with Project.open(project) as p:
        done = p.annotate(endpoint)
    answers = _journal(project / "llm.jsonl")
    assert [a["answer"] for a in answers] == [None, None, None, "positive", "negative", None]
    assert done["accepted"] == 0 and done["to_people"] == 6  # no log-probs: no confidence


def test_the_saving_simulation_pairs_its_arms_and_counts_whose_labels(llm, tmp_path):
    """scripts/annotator_saving.py: both arms label the same items; the people arm's labels
    are all people's, the accept-everything arm's all the LLM's, and rerunning redoes nothing."""
    out = tmp_path / "saving"
    script = SCRIPTS / "annotator_saving.py"
    args = [sys.executable, str(script), "--base-url", llm.url, "--task", "sst2",
            "--thresholds", "0", "--schedule", "4,8", "--pool-size", "40", "--eval-size", "4",
            "--epochs", "1", "--model", "tiny-random", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _journal(out / "results.jsonl")
    people = [(r["n_labeled"], r["people"], r["llm"]) for r in rows if r["arm"] == "people"]
    llm_first = [(r["n_labeled"], r["people"], r["llm"]) for r in rows if r["arm"] == "llm@0"]
    assert people == [(4, 4, 0), (8, 8, 0)]
    assert [n for n, _, _ in llm_first] == [4, 8]
    assert all(p + m == n for n, p, m in llm_first) and llm_first[-1][2] > 0
    chosen = {
        arm: sorted(json.loads(x)["id"] for x in (out / arm / "labels.jsonl").open())
        for arm in ("people", "llm@0")
    }
    assert chosen["people"] == sorted(set(chosen["llm@0"]))
    before = llm.completions()
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and llm.completions() == before
    assert _journal(out / "results.jsonl") == rows
