"""Writing the encoded result message where the kubelet (or local executor) reads it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_result_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically where possible.

    A regular path gets a temporary sibling and ``os.replace``, so a reader never sees
    half a message. ``/dev/termination-log`` is a file bind-mounted by the kubelet: it
    cannot be replaced, so when the rename fails the bytes (at most 4096) are written in
    place with one ``write`` call. The parent directory is created when missing.
    """
    target = Path(path)
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".rocky-result-", dir=target.parent)
    except OSError:
        _write_in_place(target, data)
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _write_in_place(target, data)


def _write_in_place(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
