"""What a local run tells a human on stderr: progress, then a summary by failure_kind.

stdout carries only the RunOutput JSON, so ``rocky-operator local ... > out.json``
keeps the two apart. On a terminal a live progress bar is shown; otherwise (CI logs,
pipes) one plain line per event and no bar, so logs stay readable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from rocky_operator.logic.decide import Attempt, AttemptState
from rocky_operator.logic.run_output import exit_code, run_output_status
from rocky_operator.logic.tables import first_names

#: What the seed's recommended consumer policy says to do per kind.
ADVICE: Mapping[str, str] = {
    "transient": "retry with backoff",
    "connection-failed": "retry with backoff",
    "quota-exceeded": "retry with extended backoff; alert",
    "auth-failed": "fix credentials; do not retry",
    "query-rejected": "fix the SQL or the target; do not retry",
    "not-found": "re-discover or triage; do not retry",
    "unknown": "triage the raw error",
    "compile-error": "fix the model",
}


def _short(text: str | None, limit: int = 160) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Reporter:
    """Progress and summary on one stream (stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self.console = Console(
            file=stream,
            force_terminal=self.interactive,
            no_color=not self.interactive,
            highlight=False,
            soft_wrap=not self.interactive,
            width=None if self.interactive else 120,
        )
        self._progress: Progress | None = None
        self._task_id: Any = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, name: str, total: int, concurrency: int, note: str | None = None) -> None:
        self.line(f"rocky-operator: run {name}: {total} table(s), concurrency {concurrency}")
        if note:
            self.line(note)
        if self.interactive and total:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._task_id = self._progress.add_task("tables", total=total)
            self._progress.start()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def line(self, text: str, style: str | None = None) -> None:
        self.console.print(Text(text, style=style or ""))

    # --- events ---------------------------------------------------------------------------

    def attempt_started(self, label: str, number: int) -> None:
        if number > 1:
            self.line(f"  retry  {label} (attempt {number})", "cyan")

    def attempt_finished(self, label: str, attempt: Attempt, final: bool) -> None:
        if attempt.state is AttemptState.COPIED:
            rows = attempt.result.rows_copied if attempt.result else None
            ms = attempt.result.duration_ms if attempt.result else 0
            self.line(
                f"  copied {label} ({rows if rows is not None else '?'} rows, {ms} ms)", "green"
            )
        else:
            then = "" if final else "; will retry"
            self.line(
                f"  failed {label} [{attempt.failure_kind}] {_short(attempt.error)}{then}",
                "red" if final else "yellow",
            )
        if final and self._progress is not None:
            self._progress.advance(self._task_id)

    def table_settled(self) -> None:
        """A table reached its outcome without an attempt ending (breaker, fail-fast)."""
        if self._progress is not None:
            self._progress.advance(self._task_id)

    def halted(self, reason: str) -> None:
        self.line(f"rocky-operator: {reason}", "bold red")

    # --- the end --------------------------------------------------------------------------

    def summary(self, doc: Mapping[str, Any]) -> None:
        """A table of failures by failure_kind, the counts and the exit code."""
        self.stop()
        errors = doc.get("errors") or []
        kinds = Counter(str(e.get("failure_kind", "unknown")) for e in errors)
        if kinds:
            table = Table(title="failures by failure_kind", title_justify="left")
            table.add_column("failure_kind")
            table.add_column("tables", justify="right")
            table.add_column("what to do")
            table.add_column("e.g.")
            for kind, count in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
                example = next(e for e in errors if e.get("failure_kind", "unknown") == kind)
                table.add_row(
                    kind, str(count), ADVICE.get(kind, ""), "/".join(example.get("asset_key", []))
                )
            self.console.print(table)
        contained = doc.get("contained") or []
        if contained:
            self.line(f"not attempted: {len(contained)} table(s): {contained[0]['unblock_hint']}")
        excluded = doc.get("excluded_tables") or []
        for reason, names in sorted(_by_reason(excluded).items()):
            self.line(
                f"excluded ({reason}): {len(names)} table(s): {first_names(names)}",
                "yellow" if reason == "view" else "bold yellow",
            )
        status = run_output_status(doc)
        self.line(
            f"rocky-operator: {doc.get('tables_copied', 0)} copied, "
            f"{doc.get('tables_failed', 0)} failed, {doc.get('tables_skipped', 0)} not attempted, "
            f"{len(excluded)} excluded -> {doc.get('status')} (exit {exit_code(status)})",
            "bold",
        )

    def no_tables(self, message: str) -> None:
        """The warning of a plan with zero tables (a typo'd prefix, a filter matching none)."""
        self.line(f"rocky-operator: warning: NoTablesMatched: {message}", "bold yellow")


def _by_reason(excluded: list[Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry in excluded:
        name = "/".join(entry.get("asset_key") or []) or str(entry.get("table_name"))
        found.setdefault(str(entry.get("reason")), []).append(name)
    return found
