"""Process hygiene shared by the control plane and the node agent."""

from __future__ import annotations

import ctypes
import signal

#: prctl(2) option: the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent_process() -> None:
    """In a child before exec: SIGKILL it when the process that started it dies.

    A test session killed hard (SIGKILL, a CI timeout) would otherwise leave etcd and the API
    server running in their own sessions. Linux only; a no-op elsewhere.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
