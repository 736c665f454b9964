"""The transfer study's configs hold the paper's settings: one row per setting, checked on the
configuration the ``lit-robust`` parser resolves (``--print_config``), so that an overlay, a
default or a drifting value that changes what a run computes fails here.

Vaishnavi, Eykholt and Rahmati, "A Study of the Effects of Transfer Learning on Adversarial
Robustness" (TMLR 2024), and the official code
(github.com/Ethos-lab/transfer_learning_for_adversarial_robustness), which pins what the paper
leaves out. Every YAML under ``configs/experiments/transfer/`` is resolved in the commands
users run: each target alone (standard fine-tuning) and with each fine-tuning overlay after
it, and each self-contained (CPU-scale) config alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config_settings import close, lookup, resolve_config

TRANSFER = Path(__file__).resolve().parents[1] / "configs" / "experiments" / "transfer"
PAPER = "Vaishnavi et al., TMLR 2024"
M, D, T = "model.init_args", "data.init_args", "trainer"
ZERO = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])

# target: (mean, std, certification skip, where the skip comes from)
TARGETS: dict[str, tuple[list[float], list[float], int, str]] = {
    "food101": (*ZERO, 50, "derived: floor(25,250 / 500)"),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010], 20,
                "derived: floor(10,000 / 500)"),
    "cifar100": ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761], 20,
                 "derived: floor(10,000 / 500)"),
    "birdsnap": (*ZERO, 4, "derived: floor(2,443 / 500)"),
    "sun397": (*ZERO, 39, "derived: floor(19,850 / 500)"),
    "caltech101": (*ZERO, 11, "derived: floor(5,647 / 500)"),
    "caltech256": (*ZERO, 30, "derived: floor(15,187 / 500)"),
    "stanford_cars": (*ZERO, 16, "derived: floor(8,041 / 500)"),
    "fgvc_aircraft": (*ZERO, 6, "derived: floor(3,333 / 500)"),
    "dtd": (*ZERO, 3, "derived: floor(1,880 / 500)"),
    "oxford_pets": (*ZERO, 7, "derived: floor(3,669 / 500)"),
    "flowers102": (*ZERO, 12, "official certified/run_certify.sh --skip 12"),
}
OVERLAYS = ("at_l2", "cr", "last_layer")
SELF_CONTAINED = sorted(p.stem for p in (TRANSFER / "self_contained").glob("*.yaml"))


def _commands() -> dict[str, tuple[str, ...]]:
    """Command id -> the config files, in order."""
    commands: dict[str, tuple[str, ...]] = {}
    for target in TARGETS:
        commands[f"targets/{target}"] = (f"targets/{target}.yaml",)
        for overlay in OVERLAYS:
            commands[f"targets/{target}+{overlay}"] = (f"targets/{target}.yaml",
                                                       f"finetune/{overlay}.yaml")
    for name in SELF_CONTAINED:
        commands[f"self_contained/{name}"] = (f"self_contained/{name}.yaml",)
    return commands


COMMANDS = _commands()


@dataclass(frozen=True)
class Row:
    """One setting: ``key`` of every resolved command whose id fully matches ``commands`` (a
    regular expression) holds ``value``."""

    reference: str
    setting: str
    commands: str
    key: str
    value: Any
    paper: str = PAPER


ALL = r"targets/\w+(\+\w+)?"
PLATEAU = r"targets/\w+(\+(at_l2|last_layer))?"
AT = r"targets/\w+\+at_l2"
CR = r"targets/\w+\+cr"
LAST = r"targets/\w+\+last_layer"
SC_FINETUNE = r"self_contained/finetune_\w+"
SC_AT = r"self_contained/(finetune|pretrain)_at"
SC_CR = r"self_contained/(finetune|pretrain)_cr"
L2_ATTACK = {"eps": 0.5, "step_size": 0.33334, "steps": 3, "norm": "l2", "random_start": True,
             "start": "sphere"}
CERTIFY = {"sigma": 0.5, "n0": 100, "n": 100_000, "alpha": 0.001, "max_images": None}
PLATEAU_RULE = {"monitor": None, "patience": 30, "factor": 0.1, "decays": 2}

ROWS: list[Row] = [
    # The fine-tuned network and the optimization of every fine-tuning.
    Row("paper: ResNet-50 sources; official --arch resnet50", "ResNet-50 (torchvision layout)", ALL,
        f"{M}.backbone", "tv_resnet50"),
    Row("official fine_tunify / prepare_source_model", "new head for the target", ALL,
        f"{M}.reset_head", True),
    Row("official pre_training.sh, run_train.sh", "SGD", ALL, f"{M}.optimizer", "sgd"),
    Row("official pre_training.sh --lr 0.01, run_train.sh --lr 0.01", "learning rate", ALL,
        f"{M}.lr", 0.01),
    Row("official robustness defaults, train_consistency.py", "momentum", ALL,
        f"{M}.momentum", 0.9),
    Row("official pre_training.sh --weight-decay 0.0001", "weight decay", ALL,
        f"{M}.weight_decay", 1e-4),
    Row("official pre_training.sh --batch-size 64, run_train.sh --batch 64", "batch size", ALL,
        f"{D}.batch_size", 64),
    Row("official transfer_datasets.py (RandomSizedCrop(224), Scale(256) + CenterCrop(224))",
        "224-px inputs", ALL, "@image_size", 224),
    Row("official transfer_datasets.py", "resize policy: random resized crop / resize + "
        "center crop", ALL, "@resize", "resize_center_crop"),
    # The study's evaluation (every target carries it, whatever overlay follows).
    Row("paper tables: SA", "clean accuracy", ALL, f"{M}.evaluators[CleanAccuracy].class_path",
        "lit_robust.evaluation.CleanAccuracy"),
    Row("paper tables: RA-WB; official eval.sh --attacks apgd-ce", "APGD-CE, 100 steps, "
        "5 restarts, L2 0.5", ALL, f"{M}.evaluators[AutoAttackEvaluator:apgd-ce].init_args",
        {"norm": "L2", "eps": 0.5, "version": "custom", "attacks_to_run": ["apgd-ce"],
         "apgd_n_iter": 100, "apgd_n_restarts": 5}),
    Row("paper tables: RA-BB; official eval.sh --attacks square", "Square, 5,000 queries, L2 0.5",
        ALL, f"{M}.evaluators[AutoAttackEvaluator:square].init_args",
        {"norm": "L2", "eps": 0.5, "version": "custom", "attacks_to_run": ["square"],
         "square_n_queries": 5000}),
    Row("official run_certify.sh", "CERTIFY sigma 0.5, N0 100, N 100,000, alpha 0.001, no "
        "image cap", ALL, f"{M}.evaluators[SmoothingCertification].init_args", CERTIFY),
    Row("official certify.py IMAGENET_GRID; Tables 5/7: SA of CR rows = accuracy at radius 0, "
        "RA-CT at 0.5", "certified accuracy at radius 0 and 0.5", ALL,
        f"{M}.evaluators[SmoothingCertification].init_args.radii",
        [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]),
    # Standard fine-tuning, AT fine-tuning and the last-layer ablation: the plateau rule.
    Row("official empirical/robustness/train.py (no step schedule)", "constant lr between "
        "plateaus", PLATEAU, f"{M}.schedule", "constant"),
    Row("official empirical/robustness/train.py: lr / 10 after 30 epochs below the best, "
        "stop at the third plateau", "plateau rule", PLATEAU,
        f"{T}.callbacks[PlateauSchedule].init_args", PLATEAU_RULE),
    Row("official train.py validates every epoch (on the test split; DESIGN §5: held out)",
        "validation split for the plateau rule", PLATEAU, f"{D}.val_size", 0.1),
    Row("official transfer_main.py (adv-train 0)", "standard fine-tuning", r"targets/\w+",
        "model.class_path", "lit_robust.methods.StandardTraining"),
    # AT fine-tuning.
    Row("official pre_training.sh --adv-train 1", "PGD adversarial training", AT,
        "model.class_path", "lit_robust.methods.AdversarialTraining"),
    Row("official pre_training.sh: --constraint 2 --eps 0.5 --attack-steps 3 --attack-lr "
        "0.33334 --random-start 1", "PGD-3, L2 0.5, step 0.33334, start on the eps-sphere", AT,
        f"{M}.attack.init_args", L2_ATTACK),
    Row("robustness attacker: attacks run in eval mode", "attack in eval mode", AT,
        f"{M}.attack_in_eval_mode", True),
    Row("official train.py: adversarial validation of the whole validation set",
        "robust validation on every validation batch", AT, f"{M}.val_attack_batches", None),
    # CR fine-tuning.
    Row("official run_train.sh; Jeong & Shin", "consistency regularization", CR,
        "model.class_path", "lit_robust.methods.ConsistencyRegularization"),
    Row("official run_train.sh --noise_sd 0.5", "sigma", CR, f"{M}.sigma", 0.5),
    Row("official run_train.sh --num-noise-vec 2", "m", CR, f"{M}.num_noise_samples", 2),
    Row("official run_train.sh --lbd 5", "lambda", CR, f"{M}.consistency_weight", 5.0),
    Row("official run_train.sh --eta 0.5", "eta", CR, f"{M}.entropy_weight", 0.5),
    Row("official train_consistency.py: m chunks, one optimizer step each",
        "training loop", CR, f"{M}.training_loop", "chunks"),
    Row("official run_train.sh --lr_step_size 50 --epochs 150 (StepLR, gamma 0.1)",
        "x0.1 every 50 epochs", CR, f"{M}.schedule", "multistep"),
    Row("official run_train.sh --lr_step_size 50", "milestones", CR, f"{M}.milestones",
        [50.0, 100.0]),
    Row("official train_consistency.py --gamma 0.1", "decay factor", CR, f"{M}.gamma", 0.1),
    Row("official run_train.sh --epochs 150", "epochs", CR, f"{T}.max_epochs", 150),
    Row("official train_consistency.py trains on the whole train split", "no validation "
        "split", CR, f"{D}.val_size", 0),
    Row("official train_consistency.py: StepLR only", "no plateau rule", CR,
        f"{T}.callbacks", []),
    # The last-layer ablation.
    Row("Table 7; official transfer_main.py --freeze-level", "last layer only", LAST,
        "model.class_path", "lit_robust.methods.LastLayerFineTuning"),
    Row("official train.py: model.train() while training", "BatchNorm statistics "
        "re-estimated on the target", LAST, f"{M}.bn_statistics", "target"),
    Row("official transfer_datasets.py normalizes the target as the target, whatever the "
        "source", "target normalization on frozen source layers", LAST,
        f"{M}.allow_normalization_change", True),
    # Caltech splits.
    Row("official transfer_datasets.py NUM_TRAINING_SAMPLES_PER_CLASS = 30",
        "30 training images per class", r"targets/caltech101(\+\w+)?",
        f"{D}.train_per_class", 30),
    Row("official transfer_datasets.py NUM_TRAINING_SAMPLES_PER_CLASS = 60",
        "60 training images per class", r"targets/caltech256(\+\w+)?",
        f"{D}.train_per_class", 60),
    Row("official transfer_datasets.py: the first N of every class in dataset order",
        "first N per class", r"targets/caltech(101|256)(\+\w+)?", f"{D}.train_selection",
        "first"),
    Row("official caltech.py Caltech256: 257 classes", "clutter kept",
        r"targets/caltech256(\+\w+)?", f"{D}.keep_clutter", True),
    # The self-contained (CPU-scale) protocol keeps the study's method hyperparameters.
    Row("official pre_training.sh / run_train.sh", "lr 0.01", SC_FINETUNE, f"{M}.lr", 0.01),
    Row("official robustness defaults", "momentum 0.9", SC_FINETUNE, f"{M}.momentum", 0.9),
    Row("official pre_training.sh", "weight decay 1e-4", SC_FINETUNE, f"{M}.weight_decay",
        1e-4),
    Row("official pre_training.sh", "batch 64", SC_FINETUNE, f"{D}.batch_size", 64),
    Row("paper tables: certification at sigma 0.5 (fewer samples at CPU scale)", "sigma 0.5",
        SC_FINETUNE, f"{M}.evaluators[SmoothingCertification].init_args.sigma", 0.5),
    Row("official pre_training.sh", "PGD-3, L2 0.5, step 0.33334, start on the eps-sphere",
        SC_AT, f"{M}.attack.init_args", L2_ATTACK),
    Row("official run_train.sh", "sigma 0.5, m 2, lambda 5, eta 0.5, official loop", SC_CR,
        f"{M}", {"sigma": 0.5, "num_noise_samples": 2, "consistency_weight": 5.0,
                 "entropy_weight": 0.5, "training_loop": "chunks"}),
    Row("Table 7 ablation, official BatchNorm mode", "last layer, target statistics",
        r"self_contained/finetune_last_layer", f"{M}.bn_statistics", "target"),
    Row("paper: supervised source", "ST source", r"self_contained/pretrain_st",
        "model.class_path", "lit_robust.methods.StandardTraining"),
    Row("paper: SimCLR source (VISSL)", "SimCLR source", r"self_contained/pretrain_simclr",
        "model.class_path", "lit_robust.methods.SimCLR"),
]
for _name, (_mean, _std, _skip, _origin) in TARGETS.items():
    _here = rf"targets/{_name}(\+\w+)?"
    ROWS += [
        Row("official transfer_datasets.py", "normalization mean", _here, f"{M}.mean", _mean),
        Row("official transfer_datasets.py", "normalization std", _here, f"{M}.std", _std),
        Row(f"Table 8 (not available; {_origin})", "certify every skip-th test image", _here,
            f"{M}.evaluators[SmoothingCertification].init_args.skip", _skip),
    ]


def resolved(command: str) -> dict[str, Any]:
    """The configuration ``lit-robust fit --config ... --print_config`` resolves."""
    return resolve_config(tuple(TRANSFER / name for name in COMMANDS[command]))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_resolved_config_holds_the_studys_settings(command: str) -> None:
    config = resolved(command)
    rows = [row for row in ROWS if re.fullmatch(row.commands, command)]
    assert rows, f"{command} matches no row; add the study's settings for it"
    wrong = {f"{row.setting} ({row.reference})": (lookup(config, row.key), row.value)
             for row in rows if not close(lookup(config, row.key), row.value)}
    assert not wrong, f"{' + '.join(COMMANDS[command])}: (found, paper) = {wrong}"


def test_every_config_and_every_row_is_used() -> None:
    used = {name for files in COMMANDS.values() for name in files}
    on_disk = {str(p.relative_to(TRANSFER)) for p in TRANSFER.rglob("*.yaml")}
    assert on_disk == used, f"configs no command resolves: {on_disk - used}"
    idle = [row.setting for row in ROWS if not any(re.fullmatch(row.commands, c)
                                                    for c in COMMANDS)]
    assert not idle, f"rows that match no command: {idle}"


def test_a_drifting_value_fails() -> None:
    """The comparison catches a value near the paper's, a missing key and a replaced list."""
    config = resolved("targets/dtd+cr")
    assert close(lookup(config, f"{M}.evaluators[SmoothingCertification].init_args.skip"), 3)
    assert not close(3.0001, 3.0) and not close(4, 3) and not close(1, True)
    assert not close({"eps": 0.5, "steps": 7}, {"eps": 0.5, "steps": 3})
    assert not close([50, 150], [50, 100]) and not close(None, 0)
    drifted = yaml.safe_load(yaml.safe_dump(config))
    drifted["model"]["init_args"]["evaluators"][-1]["init_args"]["skip"] = None
    assert not close(lookup(drifted, f"{M}.evaluators[SmoothingCertification].init_args.skip"),
                     3)
