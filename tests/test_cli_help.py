"""`lit-robust <command> --help` tells how to see the arguments of a method or DataModule."""

from __future__ import annotations

import pytest

from lit_robust.main import cli


def help_text(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        cli(args)
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["fit", "test"])
def test_help_points_to_model_and_data_help(command: str, capsys) -> None:
    text = help_text([command, "--help"], capsys)
    assert "--model.help CLASS" in text and "--data.help CLASS" in text


def test_model_help_lists_a_method_s_own_arguments(capsys) -> None:
    text = help_text(["fit", "--model.help", "TWINS"], capsys)
    assert "--model.lam LAM" in text
    assert "--model.backbone BACKBONE" in text
