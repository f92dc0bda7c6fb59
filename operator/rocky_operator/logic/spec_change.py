"""A spec edited after its run started: ignored, and said so (pure).

A run's spec is frozen with its plan (see ``kube/prepare.py``): the tables, the
runner command and the policy of a run never change once it is planned, and after an
operator restart only the frozen copy is used. An edit (``metadata.generation``
moving past the frozen one) is *observed* — ``status.observedGeneration`` follows
it, so a GitOps health check that waits for it does not wait forever — and shown as
the condition ``SpecChangedIgnored=True`` naming both generations.
"""

from __future__ import annotations

import re
from datetime import datetime

from rocky_operator.api.status import RockyRunStatus
from rocky_operator.logic.status import set_condition

CONDITION_SPEC_CHANGED_IGNORED = "SpecChangedIgnored"
REASON_SPEC_FROZEN = "SpecFrozenWithPlan"

_FROZEN_GENERATION = re.compile(r"spec of generation (\d+)")


def spec_change_message(generation: int, frozen_generation: int | None) -> str:
    """The condition's message: which generation is ignored, and which one is used."""
    used = (
        f"the run uses the spec of generation {frozen_generation}, frozen with its plan"
        if frozen_generation is not None
        else "the run uses the spec frozen with its plan"
    )
    return (
        f"spec generation {generation} is ignored: {used}; "
        "create a new RockyRun to run the edited spec"
    )


def note_spec_change(
    status: RockyRunStatus,
    *,
    generation: int | None,
    frozen_generation: int | None,
    now: datetime,
) -> RockyRunStatus:
    """``status`` describing ``generation`` (the latest seen); with the condition
    ``SpecChangedIgnored`` when that is past the frozen generation (unchanged status
    when either is unknown or they agree)."""
    if generation is None:
        return status
    update: dict[str, object] = {"observed_generation": generation}
    if frozen_generation is not None and generation > frozen_generation:
        update["conditions"] = set_condition(
            status.conditions,
            type=CONDITION_SPEC_CHANGED_IGNORED,
            status=True,
            reason=REASON_SPEC_FROZEN,
            message=spec_change_message(generation, frozen_generation),
            now=now,
            generation=generation,
        )
    return status.model_copy(update=update)


def frozen_generation_of(status: RockyRunStatus) -> int | None:
    """For a finished run (no plan loaded): the generation its spec was frozen at, as
    its status says (the condition's message, else the generation it last observed)."""
    for condition in status.conditions:
        if condition.type == CONDITION_SPEC_CHANGED_IGNORED:
            found = _FROZEN_GENERATION.search(condition.message)
            return int(found.group(1)) if found else None
    return status.observed_generation


def edit_to_acknowledge(
    status: RockyRunStatus, generation: int | None, now: datetime
) -> RockyRunStatus | None:
    """For a finished run: the status observing ``generation`` (with the condition),
    or None when it already does."""
    if generation is None:
        return None
    if status.observed_generation is not None and status.observed_generation >= generation:
        return None
    return note_spec_change(
        status, generation=generation, frozen_generation=frozen_generation_of(status), now=now
    )
