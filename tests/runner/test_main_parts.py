"""Pieces of the runner's entry point: task parsing errors, the one-line error text
(cyclic causes, broken ``__str__``), and the result file writer (atomic for regular
files, in place for symlinks and devices, parent directories created)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rocky_runner.contract import FailureKind
from rocky_runner.main import BadTaskError, _classify, _describe, read_task
from rocky_runner.result_file import write_result_file


def test_read_task_names_every_problem() -> None:
    with pytest.raises(BadTaskError, match="ROCKY_TASK is not set"):
        read_task(None)
    with pytest.raises(BadTaskError, match="not a valid table task") as info:
        read_task(json.dumps({"asset_key": "x", "strategy": "merge", "extra": 1}))
    text = str(info.value)
    for field in ("asset_key", "strategy", "extra", "source", "target", "adapter"):
        assert field in text
    with pytest.raises(BadTaskError, match="Invalid JSON"):
        read_task("{not json")


class BrokenStrError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_describe_survives_cycles_and_broken_str() -> None:
    a, b = ValueError("outer"), KeyError("inner")
    a.__cause__, b.__cause__ = b, a
    assert _describe(a) == "ValueError: outer (caused by KeyError: 'inner')"
    assert _describe(BrokenStrError()) == "BrokenStrError: <message unavailable>"
    assert _classify(BrokenStrError()) is FailureKind.UNKNOWN


def test_result_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "result.json"
    write_result_file(str(path), b'{"v":1}')
    write_result_file(str(path), b'{"v":2}')
    assert path.read_bytes() == b'{"v":2}'
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temp files left


def test_symlink_is_written_through_not_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real.log"
    real.write_bytes(b"old")
    link = tmp_path / "termination-log"
    link.symlink_to(real)
    write_result_file(str(link), b'{"v":1}')
    assert link.is_symlink()
    assert real.read_bytes() == b'{"v":1}'


def test_fifo_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_result_file(str(fifo), b'{"v":1}')
        assert os.read(reader, 100) == b'{"v":1}'
    finally:
        os.close(reader)
    assert not fifo.is_file()
