"""What a pass reads instead of the whole journal (issue 13 goal 1) equals reading it all:
the incremental decision's tally (status counts) and the JournalIndex (running attempts,
retry counts), on the random histories of test_decide_incremental."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.logic.test_decide_incremental import at, histories

from rocky_operator.kube.observe import JournalIndex
from rocky_operator.logic.decide import Attempt, AttemptState, decide
from rocky_operator.logic.decide_incremental import IncrementalDecider
from rocky_operator.logic.policy import RunPolicy
from rocky_operator.logic.status import count_retries, failure_counts, table_counts
from rocky_operator.logic.write_groups import FileAccess


@given(histories(), st.lists(st.tuples(st.floats(0, 600), st.booleans()), min_size=6, max_size=6))
@settings(max_examples=300, deadline=None)
def test_tallies_equal_reading_everything(
    history: tuple[list[str], dict[str, FileAccess], RunPolicy, list[list[Attempt]]],
    clocks: list[tuple[float, bool]],
) -> None:
    tables, files, policy, batches = history
    decider = IncrementalDecider(tables, policy, files=files)
    journal: dict[tuple[str, int], Attempt] = {}
    index = JournalIndex(journal)
    seen: list[Attempt] = []
    for batch, (seconds, cancelled) in zip(batches, clocks, strict=False):
        decider.observe(batch)
        seen.extend(batch)
        index.record(journal, batch)
        now = at(seconds)
        incremental = decider.decide(now, cancelled=cancelled)
        full = decide(tables, seen, policy, now, cancelled=cancelled, files=files)
        assert table_counts(incremental, 0, 0) == table_counts(full, 0, 0)
        assert failure_counts(incremental) == failure_counts(full)
        assert index.retries == count_retries(journal.values())
        running = {i for i, a in journal.items() if a.state is AttemptState.RUNNING}
        assert index.running == running
        assert JournalIndex(journal).retries == index.retries
