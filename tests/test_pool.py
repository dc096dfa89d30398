"""Reading a user's pool: every defect is one BadInputError naming file and line; fuzzed
files never crash the readers with anything else."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from star.errors import BadInputError
from star.labelling.formats import parse
from star.tasks.reading import Fields, read_items

GOOD = {"id": "a", "prompt": "Is it?", "choices": ["yes", "no"]}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def jsonl(*rows):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.jsonl", jsonl(GOOD, "{oops"), "p.jsonl:2: invalid JSON"),
        ("p.jsonl", b'{"id": "a", "prompt": "\xff"}\n', "p.jsonl: not UTF-8"),
        ("p.jsonl", jsonl({"prompt": "x"}), "p.jsonl:1: no field 'id' (this row has 'prompt'"),
        ("p.jsonl", jsonl({"id": "a"}), "p.jsonl:1: no field 'prompt' (this row has 'id'"),
        ("p.jsonl", jsonl({"id": "a", "prompt": "  "}), "p.jsonl:1: missing or empty field"),
        ("p.jsonl", jsonl(GOOD, {**GOOD, "prompt": "b"}), "p.jsonl:2: duplicate id 'a'"),
        ("p.jsonl", jsonl({**GOOD, "answer": "maybe"}), "p.jsonl:1: answer 'maybe' is not one"),
        ("p.jsonl", jsonl({**GOOD, "choices": ["yes"]}), "needs two or more distinct choices"),
        ("p.jsonl", jsonl([1, 2]), "p.jsonl:1: expected a JSON object"),
        ("p.jsonl", "\n\n", "p.jsonl: no rows"),
        ("p.csv", "id,prompt\na,hi\na,ho\n", "p.csv:3: duplicate id 'a'"),
        ("p.csv", "id,prompt\na,hi,extra\n", "p.csv:2: more cells than header columns"),
        ("p.csv", "id,prompt\n,hi\n", "p.csv:2: missing or empty field 'id'"),
        ("p.csv", "id,prompt,choices\na,hi,yes|yes\n", "p.csv:2: field 'choices' needs two"),
        ("p.csv", 'id,prompt\na,"unclosed\n', "p.csv:"),
    ],
)
def test_bad_pool_files_name_file_and_line(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(BadInputError) as e:
        read_items(path, Fields())
    assert message in str(e.value) and "\n" not in str(e.value)


def test_csv_and_jsonl_read_the_same_items(tmp_path):
    a = write(tmp_path, "p.jsonl", jsonl({**GOOD, "answer": "no"}, {"id": 7, "prompt": "Hi"}))
    b = write(tmp_path, "p.csv", "id,prompt,choices,answer\na,Is it?,yes|no,no\n7,Hi,,\n")
    assert read_items(a, Fields()) == read_items(b, Fields())


def test_field_names_are_configurable(tmp_path):
    path = write(tmp_path, "p.jsonl", jsonl({"uid": "x", "text": "Hello", "gold": "hi"}))
    (item,) = read_items(path, Fields(id="uid", prompt="text", answer="gold"))
    assert (item.id, item.prompt, item.answer, item.choices) == ("x", "Hello", "hi", None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["p.jsonl", "p.csv", "l.json"]))
def test_fuzzed_files_fail_only_with_bad_input_errors(tmp_path_factory, content, name):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(content)
    for read in (lambda: read_items(path, Fields()), lambda: parse(path)):
        try:
            read()
        except BadInputError as e:
            assert "\n" not in str(e) and str(path) in str(e)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["id", "prompt", "choices", "answer", "label"]),
            st.one_of(st.text(max_size=5), st.integers(), st.none(), st.lists(st.text(max_size=3))),
        ),
        max_size=5,
    )
)
def test_fuzzed_jsonl_rows_fail_only_with_bad_input_errors(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("rows") / "p.jsonl"
    path.write_text(jsonl(*rows))
    for read in (lambda: read_items(path, Fields()), lambda: parse(path)):
        try:
            read()
        except BadInputError as e:
            assert "\n" not in str(e)
