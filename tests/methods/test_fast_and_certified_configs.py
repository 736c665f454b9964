"""CLI ``fit`` and ``test`` with ``fast_dev_run`` for every fast-AT and certified-training
recipe, and the one-line errors of their bad settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lit_robust.callbacks import CatastrophicOverfittingGuard
from lit_robust.main import cli, main
from lit_robust.methods import FGSMRS, MACER, NFGSM, GradAlign, SmoothAdv
from tests.conf.tiny_overrides import write_tiny_overrides

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "configs" / "experiments"
TINY_CERTIFICATION = REPO / "tests" / "conf" / "tiny_certification.yaml"
RECIPES = {
    "fast_at/cifar10_fgsm_rs.yaml": FGSMRS,
    "fast_at/cifar10_n_fgsm.yaml": NFGSM,
    "fast_at/cifar10_grad_align.yaml": GradAlign,
    "certified/cifar10_smoothadv.yaml": SmoothAdv,
    "certified/cifar10_macer.yaml": MACER,
}


def test_every_recipe_is_listed() -> None:
    shipped = {str(p.relative_to(EXPERIMENTS)) for folder in ("fast_at", "certified")
               for p in (EXPERIMENTS / folder).glob("*.yaml")}
    assert shipped == set(RECIPES)


def recipe_args(config: str, tmp_path: Path) -> list[str]:
    args = ["--config", str(EXPERIMENTS / config)]
    if config.startswith("certified"):  # a tiny certification replaces the 100,000 samples
        args += ["--config", str(write_tiny_overrides(tmp_path, val_attack=None)),
                 "--config", str(TINY_CERTIFICATION)]
    else:
        args += ["--config", str(write_tiny_overrides(tmp_path))]
    return [*args, "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")]


@pytest.mark.parametrize("config", sorted(RECIPES))
def test_recipe_fits_and_tests_from_the_cli(config: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    args = recipe_args(config, tmp_path)
    fit = cli(["fit", *args])
    assert type(fit.model) is RECIPES[config]
    assert fit.trainer.global_step == 1
    guards = [c for c in fit.trainer.callbacks if isinstance(c, CatastrophicOverfittingGuard)]
    assert len(guards) == (1 if "fgsm_rs" in config else 0)
    assert all(len(guard.history) == 1 and not guard.events for guard in guards)

    test = cli(["test", *args])
    expected = "smoothing_sigma0.5/acr" if config.startswith("certified") else "robust_acc"
    assert any(key.startswith(expected) for key in test.model.test_results)
    assert "clean_acc" in test.model.test_results


@pytest.mark.parametrize("config, argument, message", [
    ("fast_at/cifar10_fgsm_rs.yaml", "--model.init_args.alpha=0", "alpha (the step size)"),
    ("fast_at/cifar10_n_fgsm.yaml", "--model.init_args.alpha=-0.01", "alpha (the step size)"),
    ("certified/cifar10_smoothadv.yaml", "--model.init_args.num_noise_samples=0",
     "num_noise_samples must be >= 1"),
    ("certified/cifar10_macer.yaml", "--model.init_args.num_noise_samples=0",
     "num_noise_samples must be >= 1"),
    ("fast_at/cifar10_fgsm_rs.yaml", "--data.init_args.val_size=0",
     "CatastrophicOverfittingGuard needs held-out images"),
])
def test_bad_settings_are_one_line_cli_errors(config, argument, message, tmp_path, capsys,
                                              monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *recipe_args(config, tmp_path), argument])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: ") and message in error
    assert "\n" not in error
