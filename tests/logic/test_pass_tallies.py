"""What a pass reads instead of the whole journal (issue 13 goal 1) equals reading it all:
the incremental decision's tally (status counts) and the JournalIndex (running attempts,
retry counts), on the random histories of test_decide_incremental."""

from __future__ import annotations

from hypothesis import given, settings
from tests.logic.test_decide_incremental import History, clocks_strategy, histories, replay

from rocky_operator.kube.observe import JournalIndex
from rocky_operator.logic.decide import Attempt, AttemptState, decide
from rocky_operator.logic.status import count_retries, failure_counts, table_counts


@given(histories(), clocks_strategy)
@settings(max_examples=300, deadline=None)
def test_tallies_equal_reading_everything(
    history: History, clocks: list[tuple[float, bool]]
) -> None:
    tables, files, policy, _batches = history
    journal: dict[tuple[str, int], Attempt] = {}
    index = JournalIndex(journal)
    for decider, batch, seen, now, cancelled in replay(history, clocks):
        index.record(journal, batch)
        incremental = decider.decide(now, cancelled=cancelled)
        full = decide(tables, seen, policy, now, cancelled=cancelled, files=files)
        assert table_counts(incremental, 0, 0) == table_counts(full, 0, 0)
        assert failure_counts(incremental) == failure_counts(full)
        assert index.retries == count_retries(journal.values())
        running = {i for i, a in journal.items() if a.state is AttemptState.RUNNING}
        assert index.running == running
        assert JournalIndex(journal).retries == index.retries
