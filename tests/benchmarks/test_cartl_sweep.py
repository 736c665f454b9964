"""The CARTL λ × β × k sweep: the grid it expands to, and that every command parses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from lit_robust.main import cli
from lit_robust.methods.cartl import CARTLSource, NEFTTransfer

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("cartl_sweep", REPO / "benchmarks" / "cartl_sweep.py")
cartl_sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cartl_sweep)


def test_the_grid_has_one_source_per_k_and_lambda_and_one_neft_run_per_beta() -> None:
    commands = cartl_sweep.sweep_commands([4, 8], [0.005, 0.01], [0.4, 1.0], "out")
    assert len(commands) == 2 * 2 * (1 + 2)
    sources = [c for c in commands if "source_cifar100_wrn34_10_fdm_k8.yaml" in c[5]]
    assert [c[c.index("--model.init_args.lam") + 1] for c in sources] == ["0.005", "0.01"]
    neft = commands[commands.index(sources[1]) + 2]
    assert neft[neft.index("--model.init_args.pretrained") + 1] == \
        "logs/cartl/cifar100_wrn34_10_fdm_k8_lam0.01/checkpoints/last.ckpt"
    assert neft[neft.index("--model.init_args.report_dir") + 1] == "out/k8_lam0.01_beta1"
    with pytest.raises(ValueError, match="no source config for k"):
        cartl_sweep.sweep_commands([5], [0.01], [0.4], "out")
    with pytest.raises(ValueError, match="beta"):
        cartl_sweep.sweep_commands([4], [0.01], [1.5], "out")


def test_every_command_parses_with_the_cli(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    source, neft = cartl_sweep.sweep_commands([6], [0.005], [0.6], "out")
    parsed = cli(source[2:], run=False)  # without the subcommand
    assert type(parsed.model) is CARTLSource and (parsed.model.k, parsed.model.lam) == (6, 0.005)
    parsed = cli(neft[2:], run=False)
    assert type(parsed.model) is NEFTTransfer and (parsed.model.k, parsed.model.beta) == (6, 0.6)
