"""lit_robust: robust fine-tuning and robust transfer learning with PyTorch Lightning."""

import lit_robust.paths  # noqa: F401  (records the start directory before anything can chdir)

__version__ = "0.1.0"
