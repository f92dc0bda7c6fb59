"""``${VAR}`` and ``${VAR:-default}`` in rocky.toml values, as Rocky substitutes them.

Rocky substitutes over the file's text before parsing it; here substitution runs over each
string value after parsing, so a credential's ``${VAR}`` can become a Secret reference instead
of the variable's value. Pure: the caller passes the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_WHOLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class InterpolationError(ValueError):
    """A referenced variable is unset and has no default (Rocky: a parse error)."""


def interpolate(value: str, env: Mapping[str, str], where: str) -> str:
    """``value`` with every reference replaced; unset without default is an error.

    ``${VAR:-default}`` takes the default when VAR is unset or empty, as in Rocky.
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found:
            return found
        if default is not None:
            return default
        if found is not None:  # set but empty, no default: Rocky substitutes ""
            return ""
        missing.append(name)
        return ""

    result = _REFERENCE.sub(replace, value)
    if missing:
        raise InterpolationError(
            f"{where}: environment variable {', '.join(sorted(set(missing)))} is not set"
        )
    return result


def whole_reference(value: str) -> str | None:
    """``VAR`` when ``value`` is exactly ``${VAR}`` (the form a credential should take)."""
    match = _WHOLE.fullmatch(value.strip())
    return match.group(1) if match else None


def references(value: str) -> list[str]:
    """The variable names ``value`` refers to."""
    return [m.group(1) for m in _REFERENCE.finditer(value)]
