"""The base-model signal cache: keys that change with everything an entry depends on, damaged
files recomputed (never trusted), two writers side by side, and nothing on disk when off."""

import copy
import dataclasses
import logging

import pytest
import torch
from conftest import signal_settings

from star.config import LoraConfig
from star.engine import model as models
from star.engine.cache import SignalCache, entry_key, namespace, weights_fingerprint
from star.engine.signals import base_cache

SETTINGS = signal_settings()


def columns(n: int, start: float = 0.0) -> dict[str, torch.Tensor]:
    return {"pe": torch.arange(n, dtype=torch.float32) + start, "n": torch.arange(n)}


def test_the_key_changes_with_everything_an_entry_depends_on(tiny, tmp_path):
    model, _ = tiny
    space = base_cache(tmp_path, model, torch.float32, SETTINGS).space
    changed = {
        "target mode": base_cache(
            tmp_path, model, torch.float32, dataclasses.replace(SETTINGS, target="generated")
        ),
        "length normalisation": base_cache(
            tmp_path, model, torch.float32, dataclasses.replace(SETTINGS, length_norm=True)
        ),
        "dtype": base_cache(tmp_path, model, torch.bfloat16, SETTINGS),
    }
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.model.layers[0].mlp.up_proj.weight[0, 0] += 1e-3
    changed["weights"] = base_cache(tmp_path, other, torch.float32, SETTINGS)
    for what, cache in changed.items():
        assert cache.space != space, what
    # the mode that measures generated answers also depends on how they are generated
    generated = dataclasses.replace(SETTINGS, target="generated")
    longer = dataclasses.replace(generated, answer_kind="greedy:32")
    assert (
        base_cache(tmp_path, model, torch.float32, generated).space
        != base_cache(tmp_path, model, torch.float32, longer).space
    )
    # ... and never with settings that do not change a base-model entry
    for same in (dataclasses.replace(SETTINGS, mc_passes=3, mc_seed=7, merge=True),):
        assert base_cache(tmp_path, model, torch.float32, same).space == space
    assert entry_key(space, [1, 2], [3]) != entry_key(space, [1, 2], [4])  # target tokens
    assert entry_key(space, [1, 2], [3]) != entry_key(space, [2, 1], [3])  # prompt tokens
    assert entry_key(space, [1, 2], [3]) != entry_key(space, [1], [2, 3])  # the split
    assert entry_key(space, [1, 2], [3]) == entry_key(space, [1, 2], [3])


def test_the_fingerprint_ignores_the_adapter_but_not_the_weights(tiny):
    model, _ = tiny
    bare = weights_fingerprint(model)
    peft = models.attach_lora(model, LoraConfig(r=4, target_modules=("q_proj", "v_proj")), 0)
    try:
        assert weights_fingerprint(peft) == bare
    finally:
        model = peft.unload()
    assert weights_fingerprint(model) == bare
    assert namespace(a=1) != namespace(a=2)


def test_entries_are_computed_once_and_found_by_another_process(tmp_path):
    calls = []

    def compute(missing):
        calls.append(list(missing))
        return {name: c[missing] for name, c in columns(4).items()}

    keys = ["a", "b", "c", "d"]
    rows = SignalCache(tmp_path, "ns").fetch(keys, compute)
    assert [float(r["pe"]) for r in rows] == [0, 1, 2, 3] and calls == [[0, 1, 2, 3]]
    again = SignalCache(tmp_path, "ns")  # a new process reads the file
    rows = again.fetch(["d", "a", "e"], compute)
    assert calls[-1] == [2]  # only "e", at position 2
    assert [float(r["pe"]) for r in rows] == [3, 0, 2]


def test_two_writers_keep_both_and_a_reader_sees_all(tmp_path):
    one, two = SignalCache(tmp_path, "ns"), SignalCache(tmp_path, "ns")
    one.rows(), two.rows()  # both opened before either wrote
    one.put(["a", "b"], columns(2))
    two.put(["c"], columns(1, start=10.0))
    assert len(list((tmp_path / "ns").glob("*.safetensors"))) == 2
    rows = SignalCache(tmp_path, "ns").rows()
    assert {k: float(v["pe"]) for k, v in rows.items()} == {"a": 0.0, "b": 1.0, "c": 10.0}


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_file_is_recomputed_never_trusted(tmp_path, caplog, damage):
    SignalCache(tmp_path, "ns").put(["a", "b", "c"], columns(3))
    (path,) = (tmp_path / "ns").glob("*.safetensors")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 5])
    elif damage == "flip":  # a byte of the tensor data, past the header
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    else:
        path.write_bytes(b"")
    recomputed = []

    def compute(missing):
        recomputed.extend(missing)
        return {name: c[missing] + 100 for name, c in columns(3).items()}

    with caplog.at_level(logging.WARNING, logger="star.engine.cache"):
        rows = SignalCache(tmp_path, "ns").fetch(["a", "b", "c"], compute)
    assert recomputed == [0, 1, 2]
    assert [float(r["pe"]) for r in rows] == [100.0, 101.0, 102.0]
    assert "is damaged" in caplog.text
    assert not path.exists()  # removed; the recomputed entries are in a new file
    assert len(SignalCache(tmp_path, "ns").rows()) == 3


def test_switched_off_it_keeps_entries_in_memory_only(tmp_path):
    cache = SignalCache(None, "memory")
    cache.put(["a"], columns(1))
    assert list(cache.rows()) == ["a"] and not any(tmp_path.iterdir())
