"""What each documented install promises, read from the sources: the modules it ships and
every module those import (also inside functions; not under ``if TYPE_CHECKING``).

An extra owns source files; a fresh virtualenv with that extra alone must import all of them
and everything they import. ``pyproject.toml`` must declare, for each extra, the distribution
of every third-party module its files import (a module that only arrives as someone else's
dependency can vanish with their next release).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("rocky_operator", "rocky_runner", "rocky_replication")
REMOTE_ADAPTERS = ("databricks", "snowflake", "bigquery")
#: Shared by the remote adapters only (sqlglot: the connector extras).
REMOTE_ONLY = (*REMOTE_ADAPTERS, "sql_dialect")


@dataclass(frozen=True)
class Install:
    """One documented install: ``pip install '.[extra]'`` (``extra`` "" is the base)."""

    extra: str
    roots: tuple[str, ...]
    """Source directories whose modules it ships (import path root, package dir)."""
    where: str
    """Where the install is documented."""

    def files(self) -> list[tuple[Path, str]]:
        """(file, module name) of the modules this install promises. The runner's remote
        adapters belong to their connector extra, every other runner module to the base."""
        out: list[tuple[Path, str]] = []
        runner = REPO / "runner"
        for path in sorted((runner / "rocky_runner").rglob("*.py")):
            remote = path.parent.name == "adapters" and path.stem in REMOTE_ONLY
            if self.extra in REMOTE_ADAPTERS:
                include = remote and path.stem in (self.extra, "sql_dialect")
            else:
                include = not remote
            if include:
                out.append((path, module_name(path, runner)))
        for root in self.roots:
            base = REPO / root
            out += [(path, module_name(path, base)) for path in sorted(base.rglob("*.py"))]
        return out


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


INSTALLS = (
    Install("", (), "the runner image's base install (pyproject.toml)"),
    Install("operator", ("operator",), "README.md, command 1"),
    Install("examples", ("operator", "examples/dagster"), "docs/consumers.md"),
    *(Install(name, (), "docs/install.md (the image's EXTRAS)") for name in REMOTE_ADAPTERS),
)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk without the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from (n for stmt in child.orelse for n in [stmt, *_walk_runtime(stmt)])
            continue
        yield child
        yield from _walk_runtime(child)


def imports_of(path: Path) -> set[tuple[str, tuple[str, ...]]]:
    """(module, names) of every absolute import executed at run time somewhere in ``path``;
    names are those of ``from module import names`` (maybe submodules), () for ``import``."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[tuple[str, tuple[str, ...]]] = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, ()) for alias in node.names)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module != "__future__"
        ):
            found.add((node.module, tuple(sorted(a.name for a in node.names))))
    return found


def third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top not in sys.stdlib_module_names and top not in FIRST_PARTY


def promised_imports(install: Install) -> tuple[list[str], list[tuple[str, tuple[str, ...]]]]:
    """The first-party modules and the third-party imports a fresh install must resolve."""
    files = install.files()
    modules = [name for _, name in files]
    external = sorted({imp for path, _ in files for imp in imports_of(path) if third_party(imp[0])})
    return modules, external


def declared(extra: str, _seen: frozenset[str] = frozenset()) -> set[str]:
    """Distribution names (normalized) ``pip install '.[extra]'`` asks for: the base
    dependencies, the extra's, and those of the extras it names (``rocky-operator[operator]``)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    seen = _seen | {extra}
    raw = list(project["dependencies"])
    if extra:
        raw += project["optional-dependencies"][extra]
    names: set[str] = set()
    for item in raw:
        req = Requirement(item)
        if canonicalize_name(req.name) != own:
            names.add(canonicalize_name(req.name))
            continue
        for sub in sorted(req.extras - seen):
            names |= declared(sub, seen)
    return names


def distribution_index() -> dict[Path, str]:
    """Installed file -> normalized name of the distribution that installed it."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    index: dict[Path, str] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            index[Path(str(dist.locate_file(file))).resolve()] = name
    return index


def resolve(module: str, names: tuple[str, ...]) -> list[str]:
    """The modules an import loads: ``from google.cloud import bigquery`` is
    ``google.cloud.bigquery`` (a submodule), ``from x import function`` is ``x``."""
    import importlib.util

    subs = []
    for name in names:
        try:
            if importlib.util.find_spec(f"{module}.{name}") is not None:
                subs.append(f"{module}.{name}")
        except (ModuleNotFoundError, ValueError):  # ValueError: a module without __spec__
            pass
    return subs if subs and len(subs) == len(names) else [module, *subs]


def distribution_of(module: str, index: dict[Path, str]) -> str | None:
    """The distribution whose files hold ``module`` (a namespace package: None)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin in (None, "namespace"):
        return None
    return index.get(Path(spec.origin).resolve())
