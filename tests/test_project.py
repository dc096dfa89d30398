"""Labelling projects end to end on the tiny model: init, next, label, train, status, export;
bad input leaves the directory byte for byte unchanged; a second process is refused."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tree_hash

from star.cli import main
from star.labelling.project import Project

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "reviews"
GOLD = {  # the example pool's true labels (written with it)
    **{f"r{n:02d}": "positive" for n in (1, 3, 4, 6, 8, 10, 12, 14, 16, 18, 20)},
    **{f"r{n:02d}": "negative" for n in (2, 5, 7, 9, 11, 13, 15, 17, 19)},
}
FAST = ["--model", "tiny-random", "--lora-r", "4", "--epochs", "1", "--batch-size", "4"]


def star(*args) -> int:
    return main([str(a) for a in args])


def fill(batch: Path, out: Path, labels: dict[str, str]) -> Path:
    rows = [json.loads(line) for line in batch.read_text().splitlines()]
    out.write_text("".join(json.dumps({**r, "label": labels[r["id"]]}) + "\n" for r in rows))
    return out


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "proj"
    assert (
        star(
            "init",
            path,
            "--pool",
            EXAMPLES / "pool.jsonl",
            "--eval",
            EXAMPLES / "eval.jsonl",
            "--strategy",
            "star",
            *FAST,
        )
        == 0
    )
    return path


def test_the_whole_workflow(project, tmp_path, capsys):
    assert star("next", project, "--k", 4, "--out", tmp_path / "b0.jsonl") == 0
    batch = [json.loads(x) for x in (tmp_path / "b0.jsonl").read_text().splitlines()]
    assert len(batch) == 4 and all(r["model_answer"] in ("positive", "negative") for r in batch)
    assert [r["uncertainty"] for r in batch] == sorted(
        (r["uncertainty"] for r in batch), reverse=True
    )
    # two labels: the answer's probability is at least a half, and at most one
    assert all(0.5 <= r["model_confidence"] <= 1 for r in batch)
    filled = fill(tmp_path / "b0.jsonl", tmp_path / "l0.jsonl", GOLD)
    assert star("label", project, filled) == 0
    assert star("label", project, filled) == 0  # idempotent
    assert "imported 0 label(s), 4 already recorded" in capsys.readouterr().out
    assert star("train", project) == 0
    assert star("next", project, "--k", 3, "--format", "csv", "--out", tmp_path / "b1.csv") == 0
    second = (tmp_path / "b1.csv").read_text().splitlines()[1:]
    assert not {line.split(",")[0] for line in second} & {r["id"] for r in batch}
    with Project.open(project) as p:
        status = p.status()
        assert (status["labelled"], status["waiting"], status["unlabelled"]) == (4, 3, 13)
        assert status["rounds"][0]["n_labeled"] == 4 and "accuracy" in status["rounds"][0]
    assert star("export-adapter", project, tmp_path / "adapter") == 0
    from peft import PeftModel

    from star.config import ModelConfig
    from star.engine import model as models

    base, _ = models.load(ModelConfig(name="tiny-random", dtype="float32"))
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in loaded.named_parameters())
    loaded.unload()


def test_changed_and_unexported_labels_need_a_flag(project, tmp_path, capsys):
    star("next", project, "--k", 2, "--out", tmp_path / "b.jsonl")
    ids = [json.loads(x)["id"] for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    star("label", project, fill(tmp_path / "b.jsonl", tmp_path / "l.jsonl", GOLD))
    flipped = {i: "negative" if GOLD[i] == "positive" else "positive" for i in ids}
    changed = fill(tmp_path / "b.jsonl", tmp_path / "c.jsonl", flipped)
    before = tree_hash(project)
    capsys.readouterr()
    assert star("label", project, changed) == 2
    assert "--relabel" in capsys.readouterr().err and tree_hash(project) == before
    assert star("label", project, changed, "--relabel") == 0
    with Project.open(project) as p:
        assert {i: p.labels()[i] for i in ids} == flipped
    other = next(i for i in GOLD if i not in ids)
    (tmp_path / "u.jsonl").write_text(json.dumps({"id": other, "label": GOLD[other]}) + "\n")
    assert star("label", project, tmp_path / "u.jsonl") == 2
    assert star("label", project, tmp_path / "u.jsonl", "--allow-unexported") == 0


def test_label_studio_export_is_imported(project, tmp_path):
    star("next", project, "--k", 3, "--format", "label-studio", "--out", tmp_path / "ls.json")
    tasks = json.loads((tmp_path / "ls.json").read_text())
    assert tasks[0]["predictions"][0]["result"][0]["type"] == "choices"
    for n, task in enumerate(tasks):  # what Label Studio's JSON export adds
        task["id"] = n + 1
        task["annotations"] = [
            {
                "id": 1,
                "was_cancelled": n == 2,
                "result": [
                    {
                        "from_name": "label_choice",
                        "to_name": "prompt",
                        "type": "choices",
                        "value": {"choices": [GOLD[task["data"]["star_id"]]]},
                    }
                ],
            }
        ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    assert star("label", project, tmp_path / "export.json") == 0
    with Project.open(project) as p:
        got = p.labels()
    assert got == {t["data"]["star_id"]: GOLD[t["data"]["star_id"]] for t in tasks[:2]}


def test_k_larger_than_the_pool_takes_what_is_left(project, tmp_path, capsys):
    assert star("next", project, "--k", 50, "--out", tmp_path / "all.jsonl") == 0
    assert "only 20 unlabelled item(s) were left" in capsys.readouterr().out
    assert star("next", project, "--k", 1) == 2
    assert "nothing left to select" in capsys.readouterr().err


def test_free_text_pool(tmp_path):
    pool = tmp_path / "pool.csv"
    pool.write_text("id,prompt\n" + "".join(f"q{n},What is {n} plus {n}?\n" for n in range(6)))
    path = tmp_path / "p"
    assert star("init", path, "--pool", pool, "--max-new-tokens", 4, *FAST) == 0
    assert star("next", path, "--k", 2, "--format", "csv", "--out", tmp_path / "b.csv") == 0
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[0] == "id,prompt,choices,model_answer,model_confidence,uncertainty,label"
    assert len(lines) == 3


def bad_cases(tmp_path: Path) -> list[tuple[list, str]]:
    def f(name: str, content: str | bytes) -> Path:
        p = tmp_path / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        return p

    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "vit"}))
    pool = EXAMPLES / "pool.jsonl"
    return [
        (
            ["label", "{p}", f("a.jsonl", '{"id": "r01", "label": "positive"}\n{bad\n')],
            ":2: invalid JSON",
        ),
        (["label", "{p}", f("b.jsonl", b"\xff\xfe")], "not UTF-8"),
        (
            ["label", "{p}", f("c.jsonl", '{"label": "positive"}\n')],
            ":1: missing or empty field 'id'",
        ),
        (
            ["label", "{p}", f("d.jsonl", '{"id": "zz", "label": "positive"}\n')],
            "not in the project's pool",
        ),
        (["label", "{p}", f("e.jsonl", '{"id": "r01", "label": "meh"}\n')], "is not one of"),
        (["label", "{p}", f("g.json", '{"not": "a list"}')], "expected Label Studio's JSON export"),
        (
            ["label", "{p}", f("h.jsonl", '{"id": "r01", "gold": "positive"}\n')],
            "h.jsonl: no label column; expected rows with 'id' and 'label' or 'answer', "
            "found 'gold', 'id'",
        ),
        (["label", "{p}", f("i.csv", "id,label\nr01,\nr02,\n")], "no row is labelled yet (2"),
        (["label", "{p}", f("j.jsonl", "\n")], "j.jsonl: no rows; expected rows with 'id'"),
        (["next", "{p}", "--k", "0"], "--k must be at least 1"),
        (
            [
                "init",
                tmp_path / "new1",
                "--pool",
                f("dup.jsonl", '{"id":"a","prompt":"x"}\n{"id":"a","prompt":"y"}\n'),
            ],
            "duplicate id 'a'",
        ),
        (["init", tmp_path / "new2", "--pool", f("empty.jsonl", "")], "no rows"),
        (
            ["init", tmp_path / "new3", "--pool", f("np.jsonl", '{"id":"a","prompt":""}\n')],
            "missing or empty field 'prompt'",
        ),
        (
            ["init", tmp_path / "new4", "--pool", pool, "--model", bert],
            "not a causal language model",
        ),
        (["init", "{p}", "--pool", pool], "exists and is not empty"),
    ]


def test_bad_input_is_one_line_exit_2_and_changes_nothing(project, tmp_path, capsys):
    star("next", project, "--k", 2, "--out", tmp_path / "b.jsonl")
    for args, message in bad_cases(tmp_path):
        before = tree_hash(project)
        capsys.readouterr()
        code = star(*(str(a).replace("{p}", str(project)) for a in args))
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert message in err and err.count("\n") == 1, (args, err)
        assert tree_hash(project) == before, args
    assert not any((tmp_path / f"new{n}").exists() for n in range(1, 5))


def test_eval_overlapping_the_pool_warns(tmp_path, caplog):
    assert (
        star(
            "init",
            tmp_path / "p",
            "--pool",
            EXAMPLES / "pool.jsonl",
            "--eval",
            EXAMPLES / "pool.jsonl",
            *FAST,
        )
        == 2
    )  # the pool has no answers: not an eval file
    evals = tmp_path / "eval.jsonl"
    rows = [json.loads(x) for x in (EXAMPLES / "pool.jsonl").read_text().splitlines()][:2]
    evals.write_text("".join(json.dumps({**r, "answer": GOLD[r["id"]]}) + "\n" for r in rows))
    assert (
        star("init", tmp_path / "q", "--pool", EXAMPLES / "pool.jsonl", "--eval", evals, *FAST) == 0
    )
    assert "share an id or prompt with the pool" in caplog.text


def test_a_second_process_is_refused_and_the_first_unharmed(project, tmp_path):
    with Project.open(project) as first:
        before = tree_hash(project)
        second = subprocess.run(
            [sys.executable, "-m", "star", "status", str(project)],
            capture_output=True,
            text=True,
            env=os.environ,
            timeout=120,
        )
        assert second.returncode == 2
        assert "in use by another star process" in second.stderr
        assert second.stderr.count("\n") == 1 and tree_hash(project) == before
        assert first.status()["pool"] == 20
    assert star("status", project) == 0  # released with the first


def test_seed_labels_count_and_join_the_pool(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text(
        json.dumps(
            {
                "id": "r01",
                "prompt": json.loads((EXAMPLES / "pool.jsonl").read_text().splitlines()[0])[
                    "prompt"
                ],
                "choices": ["positive", "negative"],
                "answer": "positive",
            }
        )
        + "\n"
        + json.dumps({"id": "extra", "prompt": "Review: meh\nAnswer:", "answer": "fine"})
        + "\n"
    )
    path = tmp_path / "p"
    assert star("init", path, "--pool", EXAMPLES / "pool.jsonl", "--seed-labels", seed, *FAST) == 0
    with Project.open(path) as p:
        assert p.labels() == {"r01": "positive", "extra": "fine"}
        assert len(p.pool()) == 21


def test_a_project_of_another_version_is_refused(project, capsys):
    text = (project / "project.yaml").read_text()
    (project / "project.yaml").write_text(text.replace("star_version: ", "star_version: 0.0.1-", 1))
    capsys.readouterr()
    assert star("status", project) == 2
    assert "was written by star 0.0.1-" in capsys.readouterr().err


def test_a_label_line_cut_by_a_crash_is_ignored_and_a_reimport_completes(project, tmp_path):
    star("next", project, "--k", 2, "--out", tmp_path / "b.jsonl")
    filled = fill(tmp_path / "b.jsonl", tmp_path / "l.jsonl", GOLD)
    first = json.loads(filled.read_text().splitlines()[0])
    with open(project / "labels.jsonl", "a") as f:  # what a kill mid-append leaves
        f.write(json.dumps({"id": first["id"], "label": GOLD[first["id"]]})[:15])
    with Project.open(project) as p:
        assert p.labels() == {}
    assert star("label", project, filled) == 0  # the cut line is dropped, then the append
    assert (project / "labels.jsonl").read_text().count("\n") == 2
    with Project.open(project) as p:
        assert p.labels() == {
            r["id"]: r["label"] for r in map(json.loads, filled.read_text().splitlines())
        }


def test_csv_batches_come_back_as_labels(project, tmp_path):
    import csv

    star("next", project, "--k", 3, "--format", "csv", "--out", tmp_path / "b.csv")
    with open(tmp_path / "b.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["label"] = GOLD[rows[0]["id"]]  # a person labelled one row so far
    with open(tmp_path / "l.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert star("label", project, tmp_path / "l.csv") == 0
    with Project.open(project) as p:
        assert p.labels() == {rows[0]["id"]: GOLD[rows[0]["id"]]}
        assert p.pending() == {r["id"] for r in rows[1:]}


def test_random_next_answers_only_the_chosen_and_scores_nothing(tmp_path, monkeypatch):
    """A new user's first `star next` with random: no forward pass over the candidates, and
    the model's answers (for the batch file) for the k chosen items only, before and after a
    trained round."""
    from star.active.step import Learner
    from star.engine import signals

    path = tmp_path / "proj"
    pool = EXAMPLES / "pool.jsonl"
    assert star("init", path, "--pool", pool, "--strategy", "random", *FAST) == 0
    monkeypatch.setattr(signals, "score", lambda *a, **k: pytest.fail("a candidate was scored"))
    answered = []
    real = Learner.answers

    def counting(self, model, examples, length):
        answered.append(len(examples))
        return real(self, model, examples, length)

    monkeypatch.setattr(Learner, "answers", counting)
    assert star("next", path, "--k", 3, "--out", tmp_path / "b0.jsonl") == 0
    assert answered == [3]
    filled = fill(tmp_path / "b0.jsonl", tmp_path / "l0.jsonl", GOLD)
    assert star("label", path, filled) == 0
    assert star("train", path) == 0
    answered.clear()
    assert star("next", path, "--k", 2, "--out", tmp_path / "b1.jsonl") == 0
    assert answered == [2]
    rows = [json.loads(x) for x in (tmp_path / "b1.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(isinstance(r["model_answer"], str) for r in rows)


def test_typical_next_spreads_over_uncovered_clusters_and_scores_nothing(tmp_path, monkeypatch):
    """`typical` reads only the base model's prompt embeddings: no scoring pass, answers for
    the chosen only, and after labels the next batch avoids the labelled prompts' clusters:
    exactly cluster_stratified over the candidates, the labelled prompts as covered."""
    import torch

    from star.config import ModelConfig
    from star.engine import model as models
    from star.engine import signals
    from star.engine.scoring import embed
    from star.method.selection import cluster_stratified
    from star.seeds import INIT_SELECT, derived_seed

    path = tmp_path / "proj"
    assert (
        star("init", path, "--pool", EXAMPLES / "pool.jsonl", "--strategy", "typical", *FAST) == 0
    )
    monkeypatch.setattr(signals, "score", lambda *a, **k: pytest.fail("a candidate was scored"))
    assert star("next", path, "--k", 3, "--out", tmp_path / "b0.jsonl") == 0
    filled = fill(tmp_path / "b0.jsonl", tmp_path / "l0.jsonl", GOLD)
    assert star("label", path, filled) == 0
    assert star("next", path, "--k", 2, "--out", tmp_path / "b1.jsonl") == 0
    chosen = [json.loads(x)["id"] for x in (tmp_path / "b1.jsonl").read_text().splitlines()]
    with Project.open(path) as project:
        labels, pool = project.labels(), project.pool()
        seed = project.settings.run.seed
    base, tok = models.load(ModelConfig(name="tiny-random"))
    first = {json.loads(x)["id"] for x in (tmp_path / "b0.jsonl").read_text().splitlines()}
    candidates = [i for i in pool if i.id not in labels and i.id not in first]

    def vectors(items):
        ids = tok([i.prompt for i in items], add_special_tokens=False)["input_ids"]
        return embed(base, [x[-128:] for x in ids], tok.pad_token_id, 4096)

    # no round trained yet: the strategy's own choice before training (round 0's streams)
    g = torch.Generator().manual_seed(derived_seed(seed, 0, INIT_SELECT))
    done = [i for i in pool if i.id in labels]
    picks = cluster_stratified(
        vectors(candidates), vectors(done), torch.zeros(len(candidates)), 2, g
    )
    assert chosen == [candidates[i].id for i in picks]


def test_answers_are_as_long_as_short_labels_need(tmp_path):
    """A free answer gets the longest label's tokens (as training spells it) and half again,
    at most --max-new-tokens."""

    def length(path) -> int:
        with Project.open(path) as p:
            learner = p.learner()
            return learner.answer_length([e for e in p.examples() if e.target])

    pool = tmp_path / "pool.csv"
    pool.write_text("id,prompt\n" + "".join(f"q{n},Is {n} even?\n" for n in range(6)))
    path = tmp_path / "p"
    assert star("init", path, "--pool", pool, *FAST) == 0
    with Project.open(path) as p:
        tok = p.learner().tokenizer
    assert length(path) == 64  # no labels yet: --max-new-tokens
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "q0", "label": "yes"}\n{"id": "q1", "label": "no"}\n')
    assert star("label", path, labels, "--allow-unexported") == 0
    assert [len(tok(w, add_special_tokens=False)["input_ids"]) for w in (" yes", " no")] == [1, 1]
    assert length(path) == 2  # 1 + 1 + 0
    long = tmp_path / "long.jsonl"
    answer = "no, because it is odd " * 2
    long.write_text('{"id": "q3", "label": "' + answer + '"}\n')
    assert star("label", path, long, "--allow-unexported") == 0
    n = len(tok(" " + answer.strip(), add_special_tokens=False)["input_ids"])
    assert length(path) == n + 1 + n // 2 < 64
    longer = tmp_path / "longer.jsonl"
    longer.write_text('{"id": "q4", "label": "' + answer * 5 + '"}\n')
    assert star("label", path, longer, "--allow-unexported") == 0
    assert length(path) == 64  # capped by --max-new-tokens


def test_a_choice_that_prefixes_another_is_scored_with_eos_as_a_run_scores_it(tmp_path):
    """ "yes" vs "yes sir": without EOS after each, the longer could never be the answer."""
    pool = tmp_path / "pool.jsonl"
    rows = [("a", ["yes", "yes sir"]), ("b", ["no", "maybe"])]
    lines = [json.dumps({"id": i, "prompt": "Ok?", "choices": c}) + "\n" for i, c in rows]
    pool.write_text("".join(lines))
    path = tmp_path / "p"
    assert star("init", path, "--pool", pool, *FAST) == 0
    with Project.open(path) as p:
        learner = p.learner()
        nested, plain = learner.answers(learner.base, p.examples(), 4)
    tok = learner.tokenizer
    spell = {c: tok(" " + c, add_special_tokens=False)["input_ids"] for _, cs in rows for c in cs}
    eos = tok.eos_token_id
    assert nested.token_ids in ([*spell["yes"], eos], [*spell["yes sir"], eos])
    assert plain.token_ids in (spell["no"], spell["maybe"])


def test_a_label_file_may_use_the_pools_answer_column(project, tmp_path, capsys):
    """A new user writes {"id", "answer"} because the pool file says `answer`: it is read."""
    labels = tmp_path / "answers.jsonl"
    labels.write_text('{"id": "r01", "answer": "positive"}\n{"id": "r02", "answer": ""}\n')
    assert star("label", project, labels, "--allow-unexported") == 0
    assert "imported 1 label(s)" in capsys.readouterr().out
    with Project.open(project) as p:
        assert p.labels() == {"r01": "positive"}


def test_status_says_whether_to_stop_after_two_trained_rounds(project, tmp_path, capsys):
    from star.method.stopping import cohen_kappa

    for n in range(2):
        assert star("next", project, "--k", 4, "--out", tmp_path / f"b{n}.jsonl") == 0
        assert (
            star("label", project, fill(tmp_path / f"b{n}.jsonl", tmp_path / f"l{n}.jsonl", GOLD))
            == 0
        )
        assert star("train", project) == 0
    answers = [
        [
            r["answer"]
            for r in map(
                json.loads, (project / "rounds" / f"00{k}" / "stop.jsonl").read_text().splitlines()
            )
        ]
        for k in (0, 1)
    ]
    assert len(answers[0]) == 20  # the whole pool: smaller than the default stop set
    capsys.readouterr()
    assert star("status", project) == 0
    stop = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stop:")]
    kappa = cohen_kappa(*answers)
    assert stop[0] == (
        f"stop: no (kappa: mean κ {kappa:.3f} over the last 1 of 3 round pairs (window not "
        "full), stop at ≥ 0.99)"
    )
    assert stop[1].startswith("stop: ") and "(uncertainty: mean uncertainty " in stop[1]


class _HalfWrite:
    """A file whose write stores half the bytes, then finds the disk full."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_line_and_loses_nothing(project, tmp_path, capsys, monkeypatch):
    from peft import PeftModel

    from star.labelling import journal

    assert star("next", project, "--k", 4, "--out", tmp_path / "b.jsonl") == 0
    filled = fill(tmp_path / "b.jsonl", tmp_path / "l.jsonl", GOLD)
    real_open = open

    def appends_fill_up(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _HalfWrite(f) if "a" in mode else f

    with monkeypatch.context() as m:  # the labels journal fills up half-way through a line
        m.setattr(journal, "open", appends_fill_up, raising=False)
        capsys.readouterr()
        assert star("label", project, filled) == 1
    err = capsys.readouterr().err
    assert err.startswith("star: error: no space left on the device") and err.count("\n") == 1
    with Project.open(project) as p:
        assert p.labels() == {}  # the cut line is not a label
    assert star("label", project, filled) == 0  # space again: the import completes
    with Project.open(project) as p:
        assert len(p.labels()) == 4

    def full(self, path, **kwargs):
        (Path(path) / "adapter_model.safetensors").write_bytes(b"\0" * 64)
        raise OSError(errno.ENOSPC, "No space left on device", "adapter_model.safetensors")

    before = tree_hash(project)
    with monkeypatch.context() as m:  # the adapter does not fit
        m.setattr(PeftModel, "save_pretrained", full)
        assert star("train", project) == 1
    assert "writing adapter_model.safetensors" in capsys.readouterr().err
    assert tree_hash(project) == before  # no round recorded, no half adapter left
    assert star("train", project) == 0
    with Project.open(project) as p:
        assert [r["round"] for r in p.rounds()] == [0]


def test_a_label_studio_prediction_scores_confidence_not_uncertainty():
    from star.labelling.formats import ToLabel, ls_task

    sure = ls_task(ToLabel("a", "text", ("yes", "no"), "no", 0.9, 0.47), "star-round-2")
    assert sure["predictions"][0]["score"] == 0.9 and sure["data"]["star_uncertainty"] == 0.47
    assert sure["predictions"][0]["model_version"] == "star-round-2"
    assert sure["predictions"][0]["result"][0]["value"] == {"choices": ["no"]}
    rounded_over = ls_task(ToLabel("b", "text", None, "x", 1.0000001, 0.0), "v")
    assert rounded_over["predictions"][0]["score"] == 1.0
