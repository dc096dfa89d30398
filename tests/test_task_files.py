"""A user's own labelled file as a simulated experiment: one task path for built-in and user
tasks, label-set detection, the held-out split, checksums, and the bad-input table."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import flags

from star import config as cfg
from star.cli import main
from star.tasks.extract import label_locator
from star.tasks.registry import TASKS, load_split
from star.tasks.resolve import detect_labels, holdout_split, resolve

TINY = flags(model="tiny-random", lora_r=4, epochs=1, batch_size=4, eval_size=8)


def rows_file(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def labelled(n: int, start: int = 0, word: str = "item") -> list[dict]:
    """n rows {"id", "text", "label"} with three labels and distinct texts."""
    colours = ("red", "green", "blue")
    return [
        {
            "id": f"{word}{i}",
            "text": f"{word} number {i} is {colours[i % 3]}",
            "label": colours[i % 3],
        }
        for i in range(start, start + n)
    ]


def resolved(**given):
    return resolve(cfg.build(given))


def test_builtin_text_tasks_are_labelled_files_with_a_template():
    for name, size, n_labels in (("trec", 5441, 6), ("ag_news", 4999, 4), ("sst2", 6917, 2)):
        train = load_split(name, "train")
        assert len(train) == size and len(TASKS[name].labels) == n_labels
        assert train[0].id == f"{name}-train-00000"
        assert {e.answer for e in train} == set(TASKS[name].labels)
    assert len(TASKS["banking77"].labels) == 77
    ex = load_split("banking77", "train")[0]
    assert ex.prompt.startswith("Customer message: ") and ex.prompt.endswith("\nIntent:")
    assert ex.target == " " + ex.answer.replace("_", " ")  # the verbaliser: words, not ids
    trec = load_split("trec", "test")[0]
    assert trec.prompt == (
        "How far is it from Denver to Aspen ?\nAnswer type (abbreviation, description, entity, "
        "human, location, numeric):"
    )
    assert (trec.target, trec.answer) == (" numeric", "numeric")


def test_label_locator_takes_the_first_whole_label_in_its_own_spelling():
    locate = label_locator(("card", "card arrival", "Sci/Tech"))
    assert locate("it is a Card arrival, I think").answer == "card arrival"
    assert locate("SCI/TECH news").answer == "Sci/Tech"
    assert locate("cardigan") is None
    spoken = label_locator(("card_arrival", "pin_blocked"), ("card arrival", "pin blocked"))
    found = spoken("  pin blocked")
    assert (found.answer, found.start, found.end) == ("pin_blocked", 2, 13)


def test_detected_labels_need_a_small_set_of_repeated_answers():
    from star.tasks.reading import Item

    def items(answers):
        return [Item(str(i), "p", a, None) for i, a in enumerate(answers)]

    assert detect_labels(items(["b", "a", "b", "a", "c", "c", "a", "b", "c"])) == ("a", "b", "c")
    assert detect_labels(items(["x", "y", "z", "w"])) == ()  # free answers: all distinct
    assert detect_labels(items([str(i % 101) for i in range(1000)])) == ()  # > 100 values


def test_holdout_split_keeps_every_text_on_one_side():
    from star.tasks.reading import Item

    rows = [Item(f"r{i}", f"text {i % 7}", "a", None) for i in range(30)]  # 7 texts, repeated
    pool, held = holdout_split(rows, 0.3)
    assert len(pool) + len(held) == 30
    assert {r.prompt for r in pool}.isdisjoint({r.prompt for r in held})
    assert len({r.prompt for r in held}) == 2  # round(0.3 × 7)
    assert holdout_split(rows, 0.3) == (pool, held)  # fixed: the same for every run seed


def test_a_task_file_resolves_columns_labels_split_and_checksum(tmp_path):
    path = rows_file(tmp_path / "colours.jsonl", labelled(40))
    config, task = resolved(
        task=str(path), **{"data.prompt_field": "text", "data.answer_field": "label"}
    )
    assert config.data.labels == ("blue", "green", "red")
    assert (config.data.id_field, config.data.choices_field) == ("id", "choices")
    assert config.inference.eval_mode == "options"
    assert len(task.eval) == 8 and len(task.train) == 32  # 20 % of 40 distinct texts
    assert not {e.prompt for e in task.eval} & {e.prompt for e in task.train}
    assert config.data.task_sha256 and len(config.data.task_sha256) == 64
    first = task.train[0]
    assert first.prompt == "item number 0 is red\nAnswer with one of: blue, green, red.\nAnswer:"
    assert (first.target, first.answer) == (" red", "red")


def test_a_small_file_uses_all_its_rows_where_a_setting_asks_for_more(tmp_path, caplog):
    """The room study's sizes (pool 2,000, 500 evaluation rows) on a file of 60: all 48
    training and 12 held-out rows, said once, recorded in the config; a resume agrees."""
    path = rows_file(tmp_path / "small.jsonl", labelled(60))
    given = {"data.prompt_field": "text", "data.answer_field": "label"}
    sizes = {"data.pool_size": 2000, "data.eval_size": 500}
    with caplog.at_level(logging.WARNING, logger="star.tasks.resolve"):
        config, task = resolved(task=str(path), **given, **sizes)
    assert (config.data.pool_size, config.data.eval_size) == (48, 12)
    assert (len(task.train), len(task.eval)) == (48, 12)
    assert [r.getMessage() for r in caplog.records] == [
        "small.jsonl: data.pool_size 2000 is more than its 48 training rows; data.eval_size "
        "500 is more than its 12 evaluation rows: all are used"
    ]
    fits = resolved(task=str(path), **given, **{"data.pool_size": 40})[0]
    assert (fits.data.pool_size, fits.data.eval_size) == (40, None)  # a size that fits stays
    out = tmp_path / "run"
    args = ["run", "--task", str(path), "--prompt-field", "text", "--answer-field", "label"]
    sized = [*TINY, "--pool-size", "2000", "--eval-size", "500", "--schedule", "8"]
    assert main([*args, *sized, "--out", str(out)]) == 0
    assert main([*args, *sized, "--out", str(out)]) == 0  # the same command resumes
    assert len((out / "rounds/000/eval.jsonl").read_text().splitlines()) == 12
    too_many = main([*args, *sized[:-1], "64", "--out", str(tmp_path / "r2")])
    assert too_many == 2  # the budget must still fit the pool: one line says how


def test_a_file_without_ids_numbers_its_rows_and_resumes(tmp_path, capsys):
    """A data set exported as text and label has no id column: rows are numbered per file
    (the test file's apart), the config saves the id column unset, and the run resumes."""
    rows = [{k: r[k] for k in ("text", "label")} for r in labelled(40)]
    task = rows_file(tmp_path / "mine.jsonl", rows)
    test = tmp_path / "held.csv"
    test.write_text("text,label\n" + "".join(f"held {i},red\n" for i in range(6)))
    given = {"data.prompt_field": "text", "data.answer_field": "label"}
    config, parts = resolved(task=str(task), **given, **{"data.test": str(test)})
    assert config.data.id_field is None
    assert [e.id for e in parts.train[:2]] == ["mine-00000", "mine-00001"]
    assert [e.id for e in parts.eval] == [f"mine-test-{i:05d}" for i in range(6)]
    assert parts.train[1].answer == "green" and parts.eval[0].prompt.startswith("held 0\n")
    out = tmp_path / "run"
    args = ["run", "--task", str(task), "--prompt-field", "text", "--answer-field", "label"]
    assert main([*args, *TINY, "--schedule", "8", "--out", str(out)]) == 0
    labeled = (out / "labeled.jsonl").read_text()
    assert labeled.count('"id": "mine-0') == 8
    assert main(["run", "--out", str(out)]) == 0  # resumes: nothing left, nothing changed
    assert (out / "labeled.jsonl").read_text() == labeled
    named = main([*args, "--id-field", "id", *TINY, "--schedule", "8", "--out", str(out) + "2"])
    assert named == 2 and "mine.jsonl:1: no field 'id'" in capsys.readouterr().err


def run_star(*args):
    return subprocess.run(
        [sys.executable, "-m", "star", *map(str, args)], capture_output=True, text=True
    )


def run_files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("with_test", [False, True])
def test_a_labelled_file_runs_like_a_builtin_task(tmp_path, with_test):
    """The acceptance command on a file nobody has seen, with and without --test; the run
    directory holds what a built-in task's does."""
    task = rows_file(tmp_path / "mine.jsonl", labelled(48))
    extra = ["--test", rows_file(tmp_path / "test.jsonl", labelled(10, 100))] if with_test else []
    out = tmp_path / "run"
    common = [*TINY, "--schedule", "8,12", "--strategy", "pe"]
    result = run_star(
        "run", "--task", task, "--prompt-field", "text", "--answer-field", "label",
        *extra, *common, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["task"] == str(task.resolve())
    assert saved["data"]["labels"] == ["blue", "green", "red"]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["n_labeled"] for m in metrics] == [8, 12]
    evals = [json.loads(x) for x in (out / "rounds/001/eval.jsonl").read_text().splitlines()]
    assert len(evals) == 8 and {e["predicted"] for e in evals} <= {"blue", "green", "red"}
    if with_test:
        assert {e["id"] for e in evals} <= {f"item{i}" for i in range(100, 110)}
    builtin = tmp_path / "builtin"
    again = run_star("run", "--task", "trec", "--pool-size", "40", *common, "--out", builtin)
    assert again.returncode == 0, again.stderr
    assert run_files(out) == run_files(builtin)


def test_resuming_with_a_changed_file_is_refused(tmp_path, capsys):
    task = rows_file(tmp_path / "mine.jsonl", labelled(40))
    out = tmp_path / "run"
    args = ["run", "--task", str(task), "--prompt-field", "text", "--answer-field", "label"]
    assert main([*args, *TINY, "--schedule", "8", "--out", str(out)]) == 0
    rows_file(task, labelled(41))
    before = (out / "config.yaml").read_text()
    assert main(["run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{task.resolve()}: changed since this run started" in err
    assert (out / "config.yaml").read_text() == before


def bad_inputs(tmp_path: Path) -> list[tuple[list, str]]:
    def f(name, content):
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    good = f("good.jsonl", "".join(json.dumps(r) + "\n" for r in labelled(30)))
    rows = labelled(30)
    dup = rows[:5] + [dict(rows[5], id=rows[2]["id"])] + rows[6:]
    overlap = labelled(3, 100) + [dict(rows[4], id="t-new")]
    return [
        ([f("empty.jsonl", "")], "empty.jsonl: no rows (an empty file)"),
        ([f("latin.jsonl", b'{"id": "a", "text": "caf\xe9", "label": "x"}\n')], "not UTF-8"),
        ([f("notes.jsonl", "just some notes\n")], "notes.jsonl:1: invalid JSON"),
        ([f("p.csv", 'id,text,label\n1,"open quote,x\n')], "invalid CSV"),
        ([f("cols.jsonl", '{"id": "a", "sentence": "s", "label": "x"}\n')],
         "cols.jsonl:1: no field 'text' (this row has 'id', 'sentence', 'label'"),
        ([f("nolabel.jsonl", '{"id": "a", "text": "s"}\n')], "nolabel.jsonl:1: no field 'label'"),
        ([f("dup.jsonl", "".join(json.dumps(r) + "\n" for r in dup))],
         "dup.jsonl:6: duplicate id 'item2' (first on line 3)"),
        ([good, "--test", f("leak.jsonl", "".join(json.dumps(r) + "\n" for r in overlap))],
         "leak.jsonl:4: this text is also in"),
        ([good, "--labels", "red,green"], "good.jsonl:3: answer 'blue' is not one of the labels"),
        ([f("notes.txt", "x\n")], "unknown task"),
        ([tmp_path / "missing.jsonl"], "missing.jsonl: no such file"),
    ]  # fmt: skip


def test_bad_task_files_give_one_line_and_create_nothing(tmp_path, capsys):
    for args, message in bad_inputs(tmp_path):
        out = tmp_path / "run"
        code = main(
            ["run", "--task", *map(str, args), "--prompt-field", "text", "--answer-field",
             "label", *TINY, "--schedule", "8", "--out", str(out)]
        )  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert err.startswith("star: error: ") and err.count("\n") == 1, err
        assert message in err, (message, err)
        assert not out.exists()


def test_options_mode_needs_a_label_set(capsys, tmp_path):
    free = rows_file(
        tmp_path / "free.jsonl",
        [{"id": str(i), "prompt": f"q{i}", "answer": f"a{i}"} for i in range(9)],
    )
    code = main(
        ["run", "--task", str(free), "--eval-mode", "options", *TINY, "--out", str(tmp_path / "r")]
    )
    assert code == 2 and "needs a closed label set" in capsys.readouterr().err
    config, _ = resolved(task=str(free))
    assert config.inference.eval_mode == "generate" and config.data.labels == ()


def test_builtin_tasks_refuse_task_file_options():
    with pytest.raises(Exception, match="data.prompt_field is 'text', but built-in gsm8k"):
        resolved(task="gsm8k", **{"data.prompt_field": "text"})
    with pytest.raises(Exception, match="data.test is for a task file"):
        resolved(task="trec", **{"data.test": "x.jsonl"})


def test_star_tasks_lists_sizes_and_label_sets():
    result = run_star("tasks")
    assert result.returncode == 0
    text = result.stdout
    assert "trec       5441 train / 500 test" in text
    assert "6 labels: abbreviation, description, entity, human, location, numeric" in text
    assert "banking77" in text and "77 labels: " in text and "sst2" in text
    assert "ag_news    4999 train / 2000 test" in text and "4 labels: World, Sports" in text
    assert "labelled .jsonl/.csv file" in text


def test_sweep_and_report_work_on_a_task_file(tmp_path):
    task = rows_file(tmp_path / "mine.csv.jsonl", labelled(40))
    out = tmp_path / "sweep"
    result = run_star(
        "sweep", "--task", task, "--prompt-field", "text", "--answer-field", "label",
        "--strategies", "random,pe", "--seeds", "0", "--schedule", "6,10", *TINY,
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    report = run_star("report", out, "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| pe " in summary and "| random " in summary


def test_number_and_boolean_labels_are_read_as_text(tmp_path):
    rows = [
        {"id": i, "prompt": f"row {i}", "answer": [i % 2 == 0, i % 2][i % 3 == 0]}
        for i in range(30)
    ]
    config, task = resolved(task=str(rows_file(tmp_path / "mixed.jsonl", rows)))
    assert config.data.labels == ("0", "1", "false", "true")
    assert {e.answer for e in task.train + task.eval} == {"0", "1", "false", "true"}
    assert {e.id for e in task.train + task.eval} == {str(i) for i in range(30)}  # text ids
