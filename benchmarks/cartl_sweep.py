"""CARTL's λ × β × k grid (CIFAR-100 → CIFAR-10, WRN-34-10) as ``lit-robust`` commands.

Chen et al., "CARTL: Cooperative Adversarially-Robust Transfer Learning", ICML 2021, sweep
the FDM weight λ of the source, the spectral norm β of NEFT and the number k of fine-tuned
blocks. For every (k, λ) this trains one CARTL source
(``configs/experiments/cartl/source_cifar100_wrn34_10_fdm_k<k>.yaml`` with ``lam`` λ, logged
to ``logs/cartl/cifar100_wrn34_10_fdm_k<k>_lam<λ>``) and fine-tunes it with NEFT for every β
(``cifar10_from_cifar100_wrn34_10_neft_k<k>.yaml``), each writing its report to
``<reports>/k<k>_lam<λ>_beta<β>/report.json``. Then lay the reports out with::

    python -m lit_robust.analysis reports/cartl_sweep --rows model.k model.pretrained \\
        --cols model.beta --metrics clean=clean_acc 'pgd20=robust_acc/pgd20*' \\
        'pgd100=robust_acc/pgd100*'

Usage (from the repository root; prints the commands, ``--run`` runs them in order)::

    python benchmarks/cartl_sweep.py [--ks 4 6 8] [--lams 0.005 0.01]
        [--betas 0.2 0.4 0.6 0.8 1.0] [--reports reports/cartl_sweep] [--run]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

CONFIGS = Path("configs/experiments/cartl")
PAPER_KS = (4, 6, 8)


def sweep_commands(ks: list[int], lams: list[float], betas: list[float],
                   reports: str) -> list[list[str]]:
    """The source and NEFT commands of the grid, sources first for each (k, λ)."""
    unknown = sorted(set(ks) - set(PAPER_KS))
    if unknown:
        raise ValueError(f"no source config for k={unknown}; the shipped ones are k in "
                         f"{list(PAPER_KS)}")
    if any(not 0 < b <= 1 for b in betas) or any(lam < 0 for lam in lams):
        raise ValueError(f"need 0 < beta <= 1 and lambda >= 0, got betas {betas}, lambdas {lams}")
    commands = []
    for k in ks:
        for lam in lams:
            version = f"cifar100_wrn34_10_fdm_k{k}_lam{lam:g}"
            commands.append([
                "lit-robust", "fit", "--test_after_fit", "true",
                "--config", str(CONFIGS / f"source_cifar100_wrn34_10_fdm_k{k}.yaml"),
                "--model.init_args.lam", f"{lam:g}",
                "--trainer.logger.init_args.version", version,
            ])
            for beta in betas:
                commands.append([
                    "lit-robust", "fit", "--test_after_fit", "true",
                    "--config", str(CONFIGS / f"cifar10_from_cifar100_wrn34_10_neft_k{k}.yaml"),
                    "--model.init_args.pretrained",
                    f"logs/cartl/{version}/checkpoints/last.ckpt",
                    "--model.init_args.beta", f"{beta:g}",
                    "--model.init_args.report_dir",
                    f"{reports}/k{k}_lam{lam:g}_beta{beta:g}",
                ])
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", type=int, nargs="+", default=list(PAPER_KS))
    parser.add_argument("--lams", type=float, nargs="+", default=[0.005, 0.01])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8, 1.0])
    parser.add_argument("--reports", default="reports/cartl_sweep")
    parser.add_argument("--run", action="store_true", help="run the commands in order")
    args = parser.parse_args(argv)
    for command in sweep_commands(args.ks, args.lams, args.betas, args.reports):
        print(shlex.join(command), flush=True)
        if args.run:
            subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
