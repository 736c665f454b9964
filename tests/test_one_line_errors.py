"""Settings that cannot work end ``lit-robust`` with one line, ``lit-robust: error: ...``, and
exit status 2, before any training, and the line says what to change."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lit_robust.main import main
from lit_robust.models.zoo import build_backbone
from tests.conf.tiny_overrides import SHORT_FIT, TINY_CLI

TINY = TINY_CLI
GTSRB = ["--data", "lit_robust.data.GTSRBDataModule", "--data.samples_per_class", "2",
         "--data.val_size", "0.2", "--data.test_samples_per_class", "1",
         "--data.num_workers", "0"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])


def one_line_error(capsys, args: list[str]) -> str:
    """Run the command; it must exit with status 2 and one line on stderr, returned without
    its ``lit-robust: error: `` prefix."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error, error[-2000:]
    assert error.startswith("lit-robust: error: ")
    return error.removeprefix("lit-robust: error: ").strip()


def _tiny_source(tmp_path: Path) -> str:
    path = tmp_path / "source.pt"
    torch.save(build_backbone("tiny_cnn", num_classes=10).state_dict(), path)
    return str(path)


@pytest.mark.parametrize("method", ["NEFTTransfer", "VanillaTransfer"])
def test_k_out_of_range(method: str, tmp_path, capsys) -> None:
    error = one_line_error(capsys, [
        "fit", *TINY, "--model", f"lit_robust.methods.cartl.{method}",
        "--model.backbone", "tiny_cnn", "--model.pretrained", _tiny_source(tmp_path),
        "--model.k", "99", *SHORT_FIT])
    assert error.startswith("k=99 is out of range: TinyCNN has 5 blocks")
    assert error.endswith("choose 1 <= k <= 5")
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("*.ckpt"))


def test_a_backbone_without_block_layout_names_the_classes_that_have_one(capsys) -> None:
    error = one_line_error(capsys, [
        "fit", *TINY, "--model", "lit_robust.methods.cartl.VanillaTransfer",
        "--model.backbone", "timm/resnet18", "--model.allow_random_source", "true",
        "--model.k", "2", *SHORT_FIT])
    assert error.startswith("timm.models.resnet.ResNet has no block enumeration")
    # the refused class is not listed as supported under the same short name
    assert "torchvision.models.resnet.ResNet" in error and ", ResNet," not in error
    assert "register_block_layout" in error


def test_test_first_n_beyond_the_test_split(capsys) -> None:
    error = one_line_error(capsys, ["test", *TINY, "--data.test_samples_per_class", "null",
                                    "--data.test_first_n", "20000"])
    assert error.startswith("test_first_n=20000 exceeds the 10000 CIFAR-10 test images in ")
    assert error.endswith("choose test_first_n <= 10000, or drop it to test on all of them")


def test_test_indices_beyond_the_test_split(capsys) -> None:
    error = one_line_error(capsys, ["test", *TINY, "--data.test_samples_per_class", "null",
                                    "--data.test_indices", "[3, 20000]"])
    assert error.startswith("test_indices holds 20000, but the CIFAR-10 test split in ")
    assert "has 10000 images (indices 0..9999); fix the index list" in error


def test_other_data_under_ckpt_path_last(tmp_path, capsys) -> None:
    main(["fit", *TINY, *SHORT_FIT])
    capsys.readouterr()
    error = one_line_error(capsys, ["test", *TINY, *GTSRB, "--ckpt_path", "last"])
    last = "logs/lit_robust/version_0/checkpoints/last.ckpt"
    assert error == (
        f"the checkpoint {last} holds a model of 10 classes, but GTSRBDataModule has 43: use "
        f"the data it was trained on, or start a new run from it on this data with "
        f"--model.init_args.pretrained {last} --model.init_args.reset_head true (without "
        "--ckpt_path)")
    assert not list(tmp_path.rglob("report*.json"))


@pytest.mark.parametrize("setting", ["--trainer.default_root_dir",
                                     "--trainer.logger.init_args.save_dir",
                                     "--model.init_args.report_dir"])
@pytest.mark.parametrize("below_a_file", [False, True])
def test_an_output_folder_that_cannot_be_created(setting: str, below_a_file: bool, tmp_path,
                                                 capsys) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    folder = tmp_path / "a_file" / "runs" if below_a_file else tmp_path / "a_file"
    error = one_line_error(capsys, ["fit", *TINY, *SHORT_FIT, "--test_after_fit", "true",
                                    setting, str(folder)])
    name = setting.removeprefix("--")
    assert error == (f"{name}={folder} cannot be created: {tmp_path / 'a_file'} is a file, not "
                     f"a folder; choose another {name}")
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_new_fit_beside_another_runs_last_checkpoint(tmp_path, capsys) -> None:
    no_logger = ["--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "r")]
    main(["fit", *TINY, *SHORT_FIT, *no_logger])
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    capsys.readouterr()
    error = one_line_error(capsys, ["fit", *TINY, *SHORT_FIT, *no_logger])
    assert error == (f"this fit would write its checkpoints into {last.parent}, which holds the "
                     "last.ckpt of an earlier run: resume that run with --ckpt_path last, or "
                     "give another --trainer.default_root_dir")
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]
