"""Pure decisions of a run: planning, retry policy, the decision core, RunOutput.

Nothing here talks to Kubernetes, runs processes, reads the clock or logs: the
local executor and the operator observe, call in here, and carry out the answer.
"""
