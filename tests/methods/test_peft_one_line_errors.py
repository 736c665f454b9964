"""Parameter-efficient fine-tuning settings that cannot work end ``lit-robust`` with one line and
exit status 2 before any training: a LoRA rank <= 0 (as a parameter selection and as AutoLoRa's
r_nat) and a LoRA selection that leaves no eligible layer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conf.tiny_overrides import TINY_CLI
from tests.test_one_line_errors import one_line_error

LORA = ["--model.backbone", "tiny_cnn", "--model.peft", "lit_robust.models.peft.LoRA"]
FAST = ["--trainer.fast_dev_run", "true"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])


def _nothing_written(tmp_path: Path) -> bool:
    return not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("rank", ["0", "-3"])
def test_a_lora_selection_with_rank_below_one(rank: str, tmp_path, capsys) -> None:
    error = one_line_error(capsys, ["fit", *TINY_CLI, *LORA, "--model.peft.rank", rank, *FAST])
    assert error == f"the LoRA rank must be a positive integer, got {rank}; e.g. rank: 8"
    assert _nothing_written(tmp_path)


@pytest.mark.parametrize("rank", ["0", "-1"])
def test_autolora_with_rank_below_one(rank: str, tmp_path, capsys) -> None:
    error = one_line_error(capsys, ["fit", *TINY_CLI, "--model", "AutoLoRa", "--model.backbone",
                                    "tiny_cnn", "--model.rank", rank, *FAST])
    assert error == (f"AutoLoRa's rank must be a positive integer, got {rank} (the paper uses "
                     "rank: 8)")
    assert _nothing_written(tmp_path)


def test_lora_on_a_network_without_an_eligible_layer_names_the_layers_it_has(tmp_path,
                                                                             capsys) -> None:
    """tiny_cnn has no attention projection: the selection leaves nothing to adapt, and the
    line lists the layers LoRA could adapt instead."""
    error = one_line_error(capsys, ["fit", *TINY_CLI, *LORA, "--model.peft.include",
                                    '["*.attn.qkv"]', *FAST])
    assert error.startswith("model.peft: LoRA found no eligible layer in NormalizedClassifier "
                            "(include=['*.attn.qkv']")
    assert error.endswith("the model's are ['net.layer1.conv', 'net.layer2.conv', "
                          "'net.layer3.conv', 'net.layer4.conv', 'net.linear']")
    assert _nothing_written(tmp_path)
