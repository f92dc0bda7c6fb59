"""The local executor: a RockyRun manifest run on this machine, one subprocess per table.

Each attempt is a runner process started through the same entry point and with the
same environment and result-file protocol as a pod (``ROCKY_TASK``,
``ROCKY_RESULT_PATH``), and the run is driven by the same decision core as the
operator (:func:`rocky_operator.logic.decide.decide`).
"""
