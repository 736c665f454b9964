"""Importing lit_robust prepares the process: passive OpenMP waiting unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = "import lit_robust, os; print(os.environ['OMP_WAIT_POLICY'])"


def run_with(environment: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=environment, capture_output=True,
                          text=True, check=True, timeout=120)
    return done.stdout.strip()


def test_import_sets_passive_waiting_unless_the_user_set_a_policy():
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert run_with(environment) == "PASSIVE"
    assert run_with({**environment, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
