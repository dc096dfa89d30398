"""Whole-or-nothing writes: a folder built in a temp place and renamed, a text file replaced."""

import os

import pytest

from star.files import atomic_write, write_folder


def test_a_folder_appears_whole_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "adapter"
    write_folder(target, lambda tmp: (tmp / "a.txt").write_text("one"))
    write_folder(target, lambda tmp: (tmp / "b.txt").write_text("two"))
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert os.stat(target).st_mode & 0o777 == 0o777 & ~_umask()


def test_a_failed_build_leaves_the_old_folder_and_no_temp(tmp_path):
    target = tmp_path / "adapter"
    write_folder(target, lambda tmp: (tmp / "a.txt").write_text("one"))

    def half(tmp):
        (tmp / "b.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_folder(target, half)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert (target / "a.txt").read_text() == "one"


def test_without_replace_a_non_empty_target_is_never_overwritten(tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    write_folder(target, lambda tmp: (tmp / "a.txt").write_text("one"), replace=False)  # empty
    with pytest.raises(OSError):
        write_folder(target, lambda tmp: (tmp / "b.txt").write_text("two"), replace=False)
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]


def test_atomic_write_replaces_the_text(tmp_path):
    path = tmp_path / "sub" / "config.yaml"
    atomic_write(path, "a: 1\n")
    atomic_write(path, "a: 2\n")
    assert path.read_text() == "a: 2\n" and [p.name for p in path.parent.iterdir()] == [path.name]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
