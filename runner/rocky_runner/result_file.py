"""Writing the encoded result message where the kubelet (or local executor) reads it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_result_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically where possible.

    A regular path gets a temporary sibling and ``os.replace``, so a reader never sees
    half a message. ``/dev/termination-log`` is a file bind-mounted by the kubelet, and
    a path may be a symlink or a device (``/dev/stdout``): those are never replaced but
    written in place with one ``write`` call (the message is at most 4096 bytes), as is
    any path whose rename fails. The parent directory is created when missing.
    """
    target = Path(path)
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
    if _must_write_in_place(target):
        _write_in_place(target, data)
        return
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


def _must_write_in_place(target: Path) -> bool:
    """Never rename over a symlink (``/dev/stdout``), a device, or a mounted file."""
    try:
        if target.is_symlink():
            return True
        if not target.exists():
            return False
        return not target.is_file() or os.path.ismount(target)
    except OSError:
        return True


def _write_in_place(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
