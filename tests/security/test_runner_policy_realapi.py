"""The runner policy scenarios of test_runner_policy.py and test_runner_policy_restart.py
(an operator restarted mid-run with a tightened policy), unchanged, on a real
kube-apiserver (the fixtures of tests/operator/test_operator_realapi.py: etcd,
kube-apiserver and kube-controller-manager built from Go modules, the committed CRD)."""

from __future__ import annotations

import pytest
from tests.operator.test_operator_realapi import (  # noqa: F401  (fixtures, by name)
    api_counts,
    api_server,
    cluster,
    control_plane,
)
from tests.security.test_runner_policy import (  # noqa: F401  (collected again here)
    test_allowed_when_the_admin_allows_it,
    test_refused_under_the_default_policy,
)
from tests.security.test_runner_policy_restart import (  # noqa: F401  (collected again here)
    test_policy_tightened_between_restarts_halts_the_run_without_new_pods,
    test_spec_edited_out_of_policy_between_restarts_keeps_the_frozen_runner,
)

pytestmark = pytest.mark.e2e
