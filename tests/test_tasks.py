"""Prompts, targets and answer extraction on real rows of each shipped task."""

from pathlib import Path

import pytest

from star.tasks.registry import INSTRUCTION, TASKS, data_file, load_split
from star.tasks.resolve import sample


def test_gsm8k_first_train_row():
    ex = load_split("gsm8k", "train")[0]
    assert ex.id == "gsm8k-train-00000"
    assert ex.prompt.startswith("Natalia sold clips to 48 of her friends in April")
    assert ex.prompt.endswith("in April and May?" + INSTRUCTION)
    assert ex.target.endswith("72 clips altogether in April and May.\nThe final answer is 72")
    assert "####" not in ex.target
    assert ex.answer == "72"


def test_boolq_first_train_row():
    ex = load_split("boolq", "train")[0]
    assert ex.prompt == (
        "Please answer the following question with true or false, question: do iran and "
        "afghanistan speak the same language?\n\nAnswer format: true/false" + INSTRUCTION
    )
    assert ex.target == "the correct answer is true"
    assert ex.answer == "true"


def test_obqa_first_train_row():
    ex = load_split("obqa", "train")[0]
    assert ex.prompt.startswith("The sun is responsible for\nAnswerA puppies learning new tricks")
    assert ex.prompt.endswith("The correct answer is " + INSTRUCTION)
    assert (ex.target, ex.answer) == ("D", "D")


@pytest.mark.parametrize("task,rows", [("gsm8k", 7473), ("boolq", 9427), ("obqa", 4957)])
def test_splits_load_with_unique_ids(task, rows):
    train = load_split(task, "train")
    assert len(train) == rows
    assert len({e.id for e in train}) == rows


@pytest.mark.parametrize(
    "text,expected",
    [
        ("She pays 3 + 4 = 7.\nThe final answer is 1,234", "1234"),
        ("The final answer is $18.50 in total, not 3", "18.50"),
        ("First 12, then 15, so 27", "27"),
        ("no digits at all", None),
        ("The final answer is -5", "-5"),
    ],
)
def test_gsm8k_extract(text, expected):
    assert TASKS["gsm8k"].extract(text) == expected


def test_gsm8k_compares_numbers():
    assert TASKS["gsm8k"].grade("The final answer is 72.0", "72") == ("72.0", True)
    assert TASKS["gsm8k"].grade("so 71", "72") == ("71", False)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("the correct answer is true", "true"),
        (" False. It is not", "false"),
        ("trueish maybe", None),
        ("yes, true and false", "true"),
    ],
)
def test_boolq_extract_first_occurrence(text, expected):
    assert TASKS["boolq"].extract(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        (" D", "D"),
        ("The correct answer is B.", "B"),
        ("Dogs bark", None),
        ("(C) or A", "C"),
        ("E", None),
    ],
)
def test_obqa_extract_first_standalone_letter(text, expected):
    assert TASKS["obqa"].extract(text) == expected


def test_grade_unparseable_is_wrong():
    assert TASKS["obqa"].grade("I do not know", "A") == (None, False)


def test_sample_is_seeded_subset_in_file_order():
    rows = load_split("obqa", "test")
    a, b = sample(rows, 20, seed=3), sample(rows, 20, seed=3)
    assert a == b and len(a) == 20
    positions = [rows.index(e) for e in a]
    assert positions == sorted(positions)
    assert sample(rows, 20, seed=4) != a
    assert sample(rows, None, seed=0) == rows


def test_mix_is_reproducible_held_out_and_graded_by_first_word(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, str(root / "scripts" / "make_mix.py"), "--out", str(tmp_path)], check=True
    )
    for split in ("train", "test"):
        assert (tmp_path / f"{split}.jsonl").read_bytes() == data_file("mix", split).read_bytes()
    train, test = load_split("mix", "train"), load_split("mix", "test")
    assert (len(train), len(test)) == (2000, 500)
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    spec = TASKS["mix"]
    assert spec.grade("odd\nIs 5 even", "odd") == ("odd", True)
    assert spec.grade(" 593.", "593") == ("593", True)
    assert spec.grade("The answer is 593", "593") == ("the", False)
