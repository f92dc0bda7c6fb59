"""Shared set-up for the adapter suites: the fakes package on the path, call-outs off."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# The Snowflake connector probes cloud metadata addresses at login unless told not to.
os.environ.setdefault("SNOWFLAKE_DISABLE_PLATFORM_DETECTION", "true")
