"""``python -m lit_robust.analysis``: the ``lit-robust-compare`` command."""

import sys

from lit_robust.analysis.cli import main

sys.exit(main())
