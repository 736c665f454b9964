"""lit_robust: robust fine-tuning and robust transfer learning with PyTorch Lightning.

Importing the package (the ``lit-robust`` command does so before torch loads) sets
``OMP_WAIT_POLICY=PASSIVE`` unless the user set it: idle OpenMP worker threads then sleep instead
of spin-waiting, which on a CPU shared with other busy processes otherwise slows training many
times over. Set ``OMP_WAIT_POLICY=ACTIVE`` before starting Python to keep spinning workers.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lit_robust.paths  # noqa: E402, F401  (records the start directory before any chdir)

__version__ = "0.1.0"
