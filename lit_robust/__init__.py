"""lit_robust: robust fine-tuning and robust transfer learning with PyTorch Lightning."""

__version__ = "0.1.0"
