"""JSONL reading with file:line errors, tokenisation and padding-light batching."""

import logging

import pytest
import torch

from star.engine.batching import (
    IGNORE,
    Encoded,
    collate,
    encode,
    length_grouped_batches,
    token_budget_batches,
)
from star.errors import BadInputError
from star.tasks.reading import read_jsonl
from star.tasks.spec import Example


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n\n{"question": "q2", answer}\n')
    with pytest.raises(BadInputError, match=r"pool\.jsonl:3: invalid JSON"):
        read_jsonl(path, ("question", "answer"))


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"question": "q"}', "missing or empty field 'answer'"),
        ('{"question": "  ", "answer": "a"}', "missing or empty field 'question'"),
        ('["not", "an", "object"]', "expected a JSON object"),
    ],
)
def test_read_jsonl_rejects_bad_rows(tmp_path, line, message):
    path = tmp_path / "x.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n' + line + "\n")
    with pytest.raises(BadInputError, match=r"x\.jsonl:2: " + message):
        read_jsonl(path, ("question", "answer"))


def test_read_jsonl_rejects_non_utf8_and_missing(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"question": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(BadInputError, match="not UTF-8"):
        read_jsonl(path, ())
    with pytest.raises(BadInputError, match="no such file"):
        read_jsonl(tmp_path / "absent.jsonl", ())


def test_collate_masks_everything_but_the_answer():
    batch = collate([Encoded([5, 6, 7], [8, 9]), Encoded([5], [4])], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 4, 0, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    i = IGNORE
    assert batch.labels.tolist() == [[i, i, i, 8, 9], [i, 4, i, i, i]]


def test_encode_cuts_prompt_from_the_left_and_target_from_the_right(tiny, caplog):
    _, tok = tiny
    ex = Example("x", "one two three four five", "six seven", "six")
    whole = tok(ex.prompt, add_special_tokens=False)["input_ids"]
    with caplog.at_level(logging.WARNING, logger="star.engine.batching"):
        (enc,) = encode([ex, Example("y", "one", "six", "six")], tok, 2, 1)[:1]
    assert enc.prompt_ids == whole[-2:]
    assert enc.target_ids == tok("six seven", add_special_tokens=False)["input_ids"][:1]
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == (
        f"1 of 2 prompts are longer than 2 tokens (longest {len(whole)}) and keep only the end: "
        "raise --max-prompt-tokens to read them whole"
    )
    assert said[1].startswith("1 of 2 answers are longer than 1 tokens")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="star.engine.batching"):
        encode([ex], tok, len(whole), 8)
    assert not caplog.records  # nothing cut, nothing said


def test_collate_left_padding():
    batch = collate([Encoded([5, 6, 7], [8, 9]), Encoded([5], [4])], pad_id=0, padding_side="left")
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9], [0, 0, 0, 5, 4]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    i = IGNORE
    assert batch.labels.tolist() == [[i, i, i, 8, 9], [i, i, i, i, 4]]


def test_token_budget_batches_sorts_and_respects_budget():
    lengths = [5, 1, 9, 3, 3, 20]
    batches = token_budget_batches(lengths, budget=10)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert batches == [[1, 3, 4], [0], [2], [5]]
    for b in batches[:-1]:
        assert len(b) * max(lengths[i] for i in b) <= 10


def test_length_grouped_batches_cover_all_once_and_are_seeded():
    lengths = list(range(50))
    a = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(1))
    b = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(1))
    assert a == b
    assert sorted(i for batch in a for i in batch) == lengths
    assert all(len(batch) <= 8 for batch in a)


def test_token_batches_fit_their_budget_and_keep_the_row_draws():
    lengths = [3, 9, 4, 12, 5, 30, 6, 7, 2, 8, 11, 10]
    batches = length_grouped_batches(lengths, 4, torch.Generator().manual_seed(1), max_tokens=24)
    assert sorted(i for batch in batches for i in batch) == list(range(12))
    for batch in batches:  # rows × longest within the budget, a too-long row alone
        longest = max(lengths[i] for i in batch)
        assert len(batch) * longest <= 24 or len(batch) == 1
    assert [5] in batches  # 30 tokens: alone
    # ascending 2,3,4,5,6,7,8,9,10,11,12 within the mega-batch (16 × 4 rows: all of them)
    # cut at rows × longest > 24: [2,3,4,5] [6,7,8] [9,10] [11,12] [30]
    assert sorted(sorted(lengths[i] for i in b) for b in batches) == [
        [2, 3, 4, 5], [6, 7, 8], [9, 10], [11, 12], [30]
    ]  # fmt: skip
