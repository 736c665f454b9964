"""The shipped experiment configs hold the papers' settings (DESIGN §6), table-driven.

Each row of :data:`SETTINGS` is a :class:`Setting`: the paper, where the value comes from (a
table or section of the paper, or a file of its official code), a file pattern, a dotted key
and the expected value. Every config under ``configs/experiments/`` that matches the pattern
must hold the value at the key **as the CLI resolves it** (defaults of the classes included,
``lit-robust --print_config``), so a drifting default fails as well as a drifting file. A key
``a.b[PGDEvaluator].c`` picks, in the list at ``a.b``, the entry whose ``class_path`` ends
with that class name. To cover a new paper, add its rows; a covered folder whose file matches
no row fails, and so does a row that matches no file.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from tests.config_settings import close, lookup, resolve_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "configs" / "experiments"
# folders whose every config must match the table (the transfer study's:
# tests/test_paper_settings_transfer.py)
COVERED = ("twins", "rift", "cartl", "autolora", "roli", "fast_at", "certified")

LINF_8 = {"eps": 8 / 255, "step_size": 2 / 255, "steps": 10, "norm": "linf"}
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CIFAR100 = ([0.5070751592371323, 0.48654887331495095, 0.4409178433670343],
            [0.2673342858792401, 0.2564384629170883, 0.27615047132568404])
M = "model.init_args"
D = "data.init_args"


@dataclass(frozen=True)
class Setting:
    """One value of one paper, where it comes from, and the configs that must hold it."""

    paper: str
    source: str
    pattern: str
    key: str
    value: Any


def cite(paper: str, source: str, rows: list[tuple[str, str, Any]]) -> list[Setting]:
    """The rows ``(pattern, key, value)`` of one paper, all from ``source``."""
    return [Setting(paper, source, pattern, key, value) for pattern, key, value in rows]


TWINS = "TWINS (Liu et al., CVPR 2023)"
RIFT = "RiFT (Zhu et al., ICCV 2023)"
CARTL = "CARTL (Chen et al., ICML 2021)"
AUTOLORA = "AutoLoRa (Xu et al., ICLR 2024)"
ROLI = "RoLI (Hua et al., CVPR 2024)"
FGSM_RS = "FGSM-RS (Wong, Rice and Kolter, ICLR 2020)"
N_FGSM = "N-FGSM (de Jorge et al., NeurIPS 2022)"
GRAD_ALIGN = "GradAlign (Andriushchenko and Flammarion, NeurIPS 2020)"
SMOOTHADV = "SmoothAdv (Salman et al., NeurIPS 2019)"
MACER = "MACER (Zhai et al., ICLR 2020)"
PGD_50X10 = {"eps": 8 / 255, "step_size": 2 / 255, "steps": 50, "norm": "linf", "restarts": 10}
CERTIFY = {"n0": 100, "n": 100_000, "alpha": 0.001}  # Cohen et al.'s CERTIFY
SHARED = "the self-contained scenarios' source, ../shared/models/README.md"

SETTINGS: list[Setting] = [
    *cite(TWINS, "official TWINS_cifar/train.sh, TWINS_high_res_data/train.sh", [
        ("twins/*.yaml", f"{M}.lr", 0.003),
        ("twins/*.yaml", "trainer.max_epochs", 60),
        ("twins/cifar*.yaml", f"{M}.weight_decay", 1e-5),
        ("twins/gtsrb_from_cifar10_*.yaml", f"{M}.weight_decay", 1e-5),
        ("twins/caltech256_*.yaml", f"{M}.weight_decay", 1e-3),
        ("twins/cifar*_twins_*.yaml", f"{M}.lam", 1.0),
        ("twins/gtsrb_from_cifar10_twins_*.yaml", f"{M}.lam", 1.0),
        ("twins/caltech256_twins_*.yaml", f"{M}.lam", 0.4),
        ("twins/*_twins_at.yaml", f"{M}.variant", "at"),
        ("twins/*_twins_trades.yaml", f"{M}.variant", "trades"),
        ("twins/*_at_ft.yaml", "model.class_path", "lit_robust.methods.AdversarialTraining"),
    ]),
    *cite(TWINS, "official TWINS_cifar/train-TWINS-AT.py: trains on the whole training split and "
                 "saves the last model (its best-checkpoint save is commented out)", [
        ("twins/cifar*.yaml", f"{D}.val_size", 0),
        ("twins/caltech256_*.yaml", f"{D}.val_size", 0),
    ]),
    *cite(TWINS, "official TWINS_cifar/train-TWINS-AT.py (SGD, MultiStepLR at epochs 30, 50)", [
        ("twins/*.yaml", f"{M}.momentum", 0.9),
        ("twins/*.yaml", f"{M}.schedule", "multistep"),
        ("twins/*.yaml", f"{M}.milestones", [30, 50]),
        ("twins/*.yaml", f"{M}.gamma", 0.1),
        ("twins/*_at_ft.yaml", f"{M}.attack_in_eval_mode", True),
    ]),
    *cite(TWINS, "official TWINS_cifar/src/argument.py (batch 128, PGD-10 step 2/255, beta 6) "
                 "and train.sh (eps 0.0314)", [
        ("twins/*.yaml", f"{D}.batch_size", 128),
        ("twins/*.yaml", f"{M}.attack.init_args", {**LINF_8, "loss": "ce"}),
        ("twins/*.yaml", f"{M}.evaluators[PGDEvaluator].init_args", {**LINF_8, "restarts": 1}),
        ("twins/*trades*.yaml", f"{M}.beta", 6.0),
    ]),
    *cite(TWINS, "the robust-models-transfer ImageNet sources the paper fine-tunes (README)", [
        ("twins/cifar*.yaml", f"{M}.mean", IMAGENET[0]),
        ("twins/cifar*.yaml", f"{M}.std", IMAGENET[1]),
        ("twins/caltech256_*.yaml", f"{M}.mean", IMAGENET[0]),
        ("twins/caltech256_*.yaml", f"{M}.std", IMAGENET[1]),
    ]),
    *cite(TWINS, SHARED, [
        ("twins/gtsrb_from_cifar10_*.yaml", f"{M}.mean", [0.0, 0.0, 0.0]),
        ("twins/gtsrb_from_cifar10_*.yaml", f"{M}.std", [1.0, 1.0, 1.0]),
    ]),
    *cite(RIFT, "official main.py (layer_sharpness: epsilon 0.1, 10 epochs of SGD lr 1)", [
        ("rift/*.yaml", "model.class_path", "lit_robust.methods.rift.RiFT"),
        ("rift/*.yaml", f"{M}.mrc_epsilon", 0.1),
        ("rift/*.yaml", f"{M}.mrc_epochs", 10),
        ("rift/*.yaml", f"{M}.mrc_lr", 1.0),
    ]),
    *cite(RIFT, "official main.py arguments (lr 1e-3, momentum 0.9, wd 5e-4, 10 epochs, step "
                "decay x0.1 at epochs // 2)", [
        ("rift/*.yaml", f"{M}.lr", 0.001),
        ("rift/*.yaml", f"{M}.momentum", 0.9),
        ("rift/*.yaml", f"{M}.weight_decay", 5e-4),
        ("rift/*.yaml", f"{M}.schedule", "multistep"),
        ("rift/*.yaml", f"{M}.milestones", [5]),
        ("rift/*.yaml", f"{M}.gamma", 0.1),
        ("rift/*.yaml", "trainer.max_epochs", 10),
    ]),
    *cite(RIFT, "official utils.py (interpolation over np.arange(0, 1.1, 0.1); PGD-10 8/255 "
                "with the step 2/225 read as 2/255) and §4 (worst of 3 restarts, 15 corruptions)", [
        ("rift/*.yaml", f"{M}.mrc_attack.init_args", LINF_8),
        ("rift/*.yaml", f"{M}.interpolation_attack.init_args", LINF_8),
        ("rift/*.yaml", f"{M}.alphas", [round(0.1 * i, 1) for i in range(11)]),
        ("rift/*.yaml", f"{M}.alpha_tolerance", 0.1),
        ("rift/*.yaml", f"{M}.evaluators[PGDEvaluator].init_args", {**LINF_8, "restarts": 3}),
        ("rift/*.yaml", f"{M}.evaluators[CorruptionRobustness].class_path",
         "lit_robust.evaluation.CorruptionRobustness"),
    ]),
    *cite(CARTL, "official src/config.env and src/trainer/base_trainer.py (SGD 0.1, momentum "
                 "0.9, wd 5e-4, batch 128, 100 epochs, x0.2 at 40/70/90, 1 warm-up epoch)", [
        ("cartl/source_*.yaml", f"{M}.lr", 0.1),
        ("cartl/*_neft_*.yaml", f"{M}.lr", 0.1),
        ("cartl/*_vanilla_*.yaml", f"{M}.lr", 0.1),
        ("cartl/source_*.yaml", f"{M}.weight_decay", 5e-4),
        ("cartl/*_neft_*.yaml", f"{M}.weight_decay", 5e-4),
        ("cartl/*_vanilla_*.yaml", f"{M}.weight_decay", 5e-4),
        ("cartl/*.yaml", f"{M}.momentum", 0.9),
        ("cartl/*.yaml", f"{D}.batch_size", 128),
        ("cartl/source_*.yaml", f"{M}.milestones", [40, 70, 90]),
        ("cartl/*_neft_*.yaml", f"{M}.milestones", [40, 70, 90]),
        ("cartl/*_vanilla_*.yaml", f"{M}.milestones", [40, 70, 90]),
        ("cartl/source_*.yaml", f"{M}.gamma", 0.2),
        ("cartl/*_neft_*.yaml", f"{M}.gamma", 0.2),
        ("cartl/source_*.yaml", f"{M}.warmup_epochs", 1.0),
        ("cartl/*_neft_*.yaml", f"{M}.warmup_epochs", 1.0),
        ("cartl/*_vanilla_*.yaml", f"{M}.warmup_epochs", 1.0),
        ("cartl/source_*.yaml", "trainer.max_epochs", 100),
        ("cartl/*_neft_*.yaml", "trainer.max_epochs", 100),
        ("cartl/*_vanilla_*.yaml", "trainer.max_epochs", 100),
    ]),
    *cite(CARTL, "official src/networks/wrn.py (LeakyReLU(0.1)) and src/networks/utils.py "
                 "(WRNBlocks: 3n + 2 blocks)", [
        ("cartl/*wrn*.yaml", f"{M}.backbone_kwargs.activation", "leaky_relu"),
        ("cartl/*wrn34_10*.yaml", f"{M}.backbone", "wrn_34_10"),
        ("cartl/*wrn28_4*.yaml", f"{M}.backbone", "wrn_28_4"),
    ]),
    *cite(CARTL, "official get_dataloader.py: every experiment normalized with CIFAR-100's "
                 "statistics (cifar10, svhntl and gtsrb map to them)", [
        ("cartl/*wrn*.yaml", f"{M}.mean", CIFAR100[0]),
        ("cartl/*wrn*.yaml", f"{M}.std", CIFAR100[1]),
    ]),
    *cite(CARTL, "official get_dataloader.py (CIFAR: crop 4, flip, RandomRotation(15); SVHN and "
                 "GTSRB: no augmentation)", [
        ("cartl/source_cifar10*.yaml", f"{D}.rotation", 15.0),
        ("cartl/cifar10_from_*.yaml", f"{D}.rotation", 15.0),
        ("cartl/svhn_from_*.yaml", f"{D}.augment", False),
        ("cartl/gtsrb_from_*.yaml", f"{D}.augment", False),
        ("cartl/source_gtsrb_*.yaml", f"{D}.augment", False),
    ]),
    *cite(CARTL, "§3 and exps/adversarial_training.py (PGD-7, L-inf 8/255, step 2/255); "
                 "§5 (PGD-20 and PGD-100 evaluation)", [
        ("cartl/source_*.yaml", f"{M}.attack.init_args", {**LINF_8, "steps": 7}),
        ("cartl/*.yaml", f"{M}.evaluators[PGDEvaluator@0].init_args",
         {**LINF_8, "steps": 20}),
        ("cartl/*.yaml", f"{M}.evaluators[PGDEvaluator@1].init_args",
         {**LINF_8, "steps": 100}),
    ]),
    *cite(CARTL, "Tables 3-4 and scripts/pwrn34_neft_sn_norm.sh (cartl_wrn34_cifar100_<k>_0.005; "
                 "NEFT beta 0.4 after FDM, power iteration 1)", [
        ("cartl/source_*_fdm_*.yaml", f"{M}.lam", 0.005),
        ("cartl/source_*_fdm_*.yaml", f"{M}.reduction", "sum"),
        ("cartl/*wrn*_neft_*.yaml", f"{M}.beta", 0.4),
        ("cartl/gtsrb_from_cifar10_resnet18_fdm_neft_k3.yaml", f"{M}.beta", 0.4),
    ]),
    *cite(CARTL, "Table 1 and scripts/pwrn34_neft_sn_norm.sh (--freeze-bn, statistics "
                 "re-estimated on the target)", [
        ("cartl/*_neft_*.yaml", f"{M}.freeze_bn_affine", True),
        ("cartl/*_neft_*.yaml", f"{M}.reuse_source_statistics", False),
    ]),
    *cite(CARTL, "Table 1 and scripts/tl_from_at.sh (--freeze-bn --reuse-teacher-statistic; "
                 "k in 4, 6, 8)", [
        ("cartl/*_vanilla_*.yaml", f"{M}.freeze_bn_affine", True),
        ("cartl/*_vanilla_*.yaml", f"{M}.reuse_source_statistics", True),
        ("cartl/*_vanilla_*.yaml", f"{M}.adversarial", False),
    ]),
    *cite(CARTL, "Table 2 and the official scripts: CIFAR-100 -> CIFAR-10 with WRN-34-10 and "
                 "k in 4, 6, 8; CIFAR-100 -> SVHN / GTSRB, CIFAR-10 -> SVHN, GTSRB -> SVHN with "
                 "k = 6; the data-size study with k = 6", [
        ("cartl/*_k4*.yaml", f"{M}.k", 4),
        ("cartl/*_k6*.yaml", f"{M}.k", 6),
        ("cartl/*_k8*.yaml", f"{M}.k", 8),
        ("cartl/*_k3.yaml", f"{M}.k", 3),
        ("cartl/svhn_from_*.yaml", f"{M}.k", 6),
        ("cartl/gtsrb_from_cifar100_*.yaml", f"{M}.k", 6),
        ("cartl/*_data*.yaml", f"{M}.k", 6),
    ]),
    *cite(CARTL, "the data-size study (§5; official cifar10(0.1|0.2|0.5) subsets of 5,000 "
                 "images per class)", [
        ("cartl/*_data10.yaml", f"{D}.samples_per_class", 500),
        ("cartl/*_data20.yaml", f"{D}.samples_per_class", 1000),
        ("cartl/*_data50.yaml", f"{D}.samples_per_class", 2500),
        ("cartl/*wrn*.yaml", f"{D}.val_size", 0),
    ]),
    *cite(CARTL, "LwF baseline: official lwf_tl_trainer.py (lr 0.001, wd 2e-4, 52 epochs, the "
                 "head alone before epoch 26, then all parameters) and scripts/lwf.sh (lambda)", [
        ("cartl/*_lwf*.yaml", f"{M}.lr", 0.001),
        ("cartl/*_lwf*.yaml", f"{M}.weight_decay", 2e-4),
        ("cartl/*_lwf*.yaml", f"{M}.schedule", "constant"),
        ("cartl/*_lwf*.yaml", f"{M}.head_only_epochs", 25),
        ("cartl/*_lwf*.yaml", f"{M}.lam", 0.1),
        ("cartl/*_lwf*.yaml", f"{M}.reuse_source_statistics", False),
        ("cartl/*_lwf*.yaml", "trainer.max_epochs", 52),
        ("cartl/*wrn34_10_lwf.yaml", f"{M}.k", None),
    ]),
    *cite(CARTL, SHARED, [
        ("cartl/*resnet18*.yaml", f"{M}.mean", [0.0, 0.0, 0.0]),
        ("cartl/*resnet18*.yaml", f"{M}.std", [1.0, 1.0, 1.0]),
        ("cartl/*resnet18_shared_robust_neft*.yaml", f"{M}.beta", 0.6),
    ]),
    *cite(AUTOLORA, "official Finetuning_Methods/AutoLoRa (high-resolution code): r_nat 8, "
                    "LoRA scale 1/8, lambda2 = 6 x accuracy, automatic lr from 0.01 (window 4, "
                    "rho 0.75, halving, stop below 1e-5), SGD momentum 0.9, wd 1e-4, batch 128, "
                    "60 epochs, PGD-10 L-inf 8/255 step 2/255, 5% of the training split held "
                    "out; the TWINS protocol's sources and normalization", [
        ("autolora/*.yaml", "model.class_path", "lit_robust.methods.AutoLoRa"),
        ("autolora/*.yaml", f"{M}.rank", 8),
        ("autolora/*.yaml", f"{M}.lora_alpha", 1.0),
        ("autolora/*.yaml", f"{M}.kl_scale", 6.0),
        ("autolora/*.yaml", f"{M}.auto_lr", True),
        ("autolora/*.yaml", f"{M}.lr", 0.01),
        ("autolora/*.yaml", f"{M}.lr_window", 4),
        ("autolora/*.yaml", f"{M}.lr_rho", 0.75),
        ("autolora/*.yaml", f"{M}.lr_divisor", 2.0),
        ("autolora/*.yaml", f"{M}.min_lr", 1e-5),
        ("autolora/*.yaml", f"{M}.momentum", 0.9),
        ("autolora/*.yaml", f"{M}.weight_decay", 1e-4),
        ("autolora/*.yaml", f"{M}.attack.init_args", {**LINF_8, "loss": "ce"}),
        ("autolora/*.yaml", f"{M}.evaluators[PGDEvaluator].init_args", {**LINF_8, "restarts": 1}),
        ("autolora/*.yaml", "data.init_args.batch_size", 128),
        ("autolora/*.yaml", "data.init_args.val_size", 0.05),
        ("autolora/*.yaml", "trainer.max_epochs", 60),
        ("autolora/cifar*.yaml", f"{M}.mean", IMAGENET[0]),
        ("autolora/caltech256.yaml", f"{M}.std", IMAGENET[1]),
        ("autolora/gtsrb_from_cifar10.yaml", f"{M}.mean", [0.0, 0.0, 0.0]),
    ]),
    *cite(ROLI, "official configs/linear/*_ranli.yaml and configs/finetune/*_roli.yaml: PGD-7 "
                "L-inf 8/255 step 2/255 training, PGD-10 validation, batch 64, cosine with 10 "
                "warm-up epochs; stage 1 SGD, stage 2 AdamW 1e-4", [
        ("roli/*.yaml", "model.class_path", "lit_robust.methods.RoLI"),
        ("roli/*.yaml", f"{M}.attack.init_args", {**LINF_8, "steps": 7, "loss": "ce"}),
        ("roli/*.yaml", f"{M}.val_attack.init_args", {**LINF_8, "loss": "ce"}),
        ("roli/*.yaml", "data.init_args.batch_size", 64),
        ("roli/*.yaml", f"{M}.schedule", "cosine"),
        ("roli/*.yaml", f"{M}.warmup_epochs", 10),
        ("roli/*_probe.yaml", f"{M}.stage", "probe"),
        ("roli/*_probe.yaml", f"{M}.optimizer", "sgd"),
        ("roli/*_probe.yaml", f"{M}.momentum", 0.9),
        ("roli/*_finetune.yaml", f"{M}.stage", "finetune"),
        ("roli/*_finetune.yaml", f"{M}.optimizer", "adamw"),
        ("roli/*_finetune.yaml", f"{M}.lr", 1e-4),
        ("roli/cifar10_probe.yaml", f"{M}.lr", 0.05),
        ("roli/cifar10_*.yaml", f"{M}.weight_decay", 0.01),
        ("roli/cifar100_probe.yaml", f"{M}.lr", 0.1),
        ("roli/cifar100_*.yaml", f"{M}.weight_decay", 0.001),
        ("roli/caltech256_probe.yaml", f"{M}.lr", 0.5),
        ("roli/caltech256_probe.yaml", f"{M}.weight_decay", 0.01),
        ("roli/caltech256_finetune.yaml", f"{M}.weight_decay", 1e-4),
        ("roli/caltech256_*.yaml", "trainer.max_epochs", 40),
        ("roli/cifar*.yaml", "trainer.max_epochs", 20),
    ]),
    *cite(FGSM_RS, "§4 and Algorithm 3; official CIFAR10/train_fgsm.py defaults: eps 8, alpha 10, "
                   "random init, 15 epochs, cyclic lr 0 -> 0.2 -> 0 peaking at half, SGD momentum "
                   "0.9, wd 5e-4, batch 128, apex mixed precision, evaluate_pgd(50 steps, 10 "
                   "restarts, step 2/255)", [
        ("fast_at/cifar10_fgsm_rs.yaml", "model.class_path", "lit_robust.methods.FGSMRS"),
        ("fast_at/cifar10_fgsm_rs.yaml", f"{M}.eps", 8 / 255),
        ("fast_at/cifar10_fgsm_rs.yaml", f"{M}.alpha", 10 / 255),
        ("fast_at/cifar10_fgsm_rs.yaml", f"{M}.noise_scale", 1.0),
        ("fast_at/cifar10_fgsm_rs.yaml", f"{M}.clip", 1.0),
        ("fast_at/cifar10_fgsm_rs.yaml", f"{M}.lr", 0.2),
        ("fast_at/cifar10_fgsm_rs.yaml", f"{M}.warmup_epochs", 7.5),
        ("fast_at/cifar10_fgsm_rs.yaml", "trainer.max_epochs", 15),
    ]),
    *cite(N_FGSM, "§4; official train.py defaults and experiments.sh (CIFAR-10: --epsilon 8 "
                  "--alpha 8 --unif 2, clip -1 = none): 30 epochs, cyclic lr 0 -> 0.2 -> 0 "
                  "peaking at half, SGD momentum 0.9, wd 5e-4, batch 128, no early stopping, "
                  "evaluate_pgd(50 steps, 10 restarts, step 2/255)", [
        ("fast_at/cifar10_n_fgsm.yaml", "model.class_path", "lit_robust.methods.NFGSM"),
        ("fast_at/cifar10_n_fgsm.yaml", f"{M}.eps", 8 / 255),
        ("fast_at/cifar10_n_fgsm.yaml", f"{M}.alpha", 8 / 255),
        ("fast_at/cifar10_n_fgsm.yaml", f"{M}.noise_scale", 2.0),
        ("fast_at/cifar10_n_fgsm.yaml", f"{M}.clip", None),
        ("fast_at/cifar10_n_fgsm.yaml", f"{M}.lr", 0.2),
        ("fast_at/cifar10_n_fgsm.yaml", f"{M}.warmup_epochs", 15),
        ("fast_at/cifar10_n_fgsm.yaml", "trainer.max_epochs", 30),
    ]),
    *cite(GRAD_ALIGN, "§4; official sh/exps_diff_eps_cifar10.sh at eps 8 (--attack fgsm "
                      "--attack_init zero --grad_align_cos_lambda 0.2 --lr_max 0.3 --epochs 30) "
                      "and train.py (SGD momentum 0.9, wd 5e-4, batch 128, cyclic lr peaking at "
                      "2/5, the clean gradient detached, PGD-50x10 with step eps/4)", [
        ("fast_at/cifar10_grad_align.yaml", "model.class_path", "lit_robust.methods.GradAlign"),
        ("fast_at/cifar10_grad_align.yaml", f"{M}.eps", 8 / 255),
        ("fast_at/cifar10_grad_align.yaml", f"{M}.alpha", None),  # the FGSM step is eps
        ("fast_at/cifar10_grad_align.yaml", f"{M}.noise_scale", 0.0),
        ("fast_at/cifar10_grad_align.yaml", f"{M}.clip", 1.0),
        ("fast_at/cifar10_grad_align.yaml", f"{M}.grad_align_lambda", 0.2),
        ("fast_at/cifar10_grad_align.yaml", f"{M}.differentiate_both_gradients", False),
        ("fast_at/cifar10_grad_align.yaml", f"{M}.lr", 0.3),
        ("fast_at/cifar10_grad_align.yaml", f"{M}.warmup_epochs", 12),
        ("fast_at/cifar10_grad_align.yaml", "trainer.max_epochs", 30),
    ]),
    *cite("FGSM-RS, N-FGSM and GradAlign", "their official CIFAR-10 codes (train_fgsm.py, "
                                          "train.py): the shared recipe", [
        ("fast_at/*.yaml", f"{M}.backbone", "preact_resnet18"),
        ("fast_at/*.yaml", f"{M}.optimizer", "sgd"),
        ("fast_at/*.yaml", f"{M}.momentum", 0.9),
        ("fast_at/*.yaml", f"{M}.weight_decay", 5e-4),
        ("fast_at/*.yaml", f"{M}.schedule", "linear"),  # the cyclic schedule after the warm-up
        ("fast_at/*.yaml", f"{D}.batch_size", 128),
        ("fast_at/*.yaml", "trainer.precision", "bf16-mixed"),  # their fp16 mixed precision
        ("fast_at/*.yaml", f"{M}.evaluators[PGDEvaluator].init_args", PGD_50X10),
        ("fast_at/cifar10_n_fgsm.yaml", f"{D}.val_size", 0),
        ("fast_at/cifar10_grad_align.yaml", f"{D}.val_size", 0),
    ]),
    *cite(SMOOTHADV, "§3; official README's CIFAR-10 recipe (code/train_pgd.py --batch 256 "
                     "--lr_step_size 50 --epochs 150 --attack PGD --num-steps 10 --epsilon 64 "
                     "--train-multi-noise --num-noise-vec 2 --warmup 10; lr 0.1, momentum 0.9, "
                     "wd 1e-4: a loader batch of 256 is 2 steps of 128) and certify.py --skip 20 "
                     "--alpha 0.001 --N0 100 --N 100000; sigma 0.25 of the paper's sweep", [
        ("certified/cifar10_smoothadv.yaml", "model.class_path", "lit_robust.methods.SmoothAdv"),
        ("certified/cifar10_smoothadv.yaml", f"{M}.sigma", 0.25),
        ("certified/cifar10_smoothadv.yaml", f"{M}.num_noise_samples", 2),
        ("certified/cifar10_smoothadv.yaml", f"{M}.train_on_all_copies", True),
        ("certified/cifar10_smoothadv.yaml", f"{M}.eps", 0.25),
        ("certified/cifar10_smoothadv.yaml", f"{M}.attack_steps", 10),
        ("certified/cifar10_smoothadv.yaml", f"{M}.eps_warmup_epochs", 10),
        ("certified/cifar10_smoothadv.yaml", f"{M}.lr", 0.1),
        ("certified/cifar10_smoothadv.yaml", f"{M}.weight_decay", 1e-4),
        ("certified/cifar10_smoothadv.yaml", f"{M}.milestones", [50, 100]),
        ("certified/cifar10_smoothadv.yaml", f"{D}.batch_size", 128),
        ("certified/cifar10_smoothadv.yaml", "trainer.max_epochs", 150),
        ("certified/cifar10_smoothadv.yaml", f"{M}.evaluators[SmoothingCertification].init_args",
         {**CERTIFY, "sigma": 0.25, "skip": 20}),
    ]),
    *cite(MACER, "Algorithm 1 and §4.1; official main.py defaults at sigma 0.25 (gauss_num 16, "
                 "beta 16, gamma 8, lbd 12, SGD lr 0.01 momentum 0.9 wd 5e-4, MultiStepLR "
                 "[200, 400] x0.1, batch 64, 440 epochs) and rs/certify.py (N0 100, N 100,000, "
                 "alpha 0.001)", [
        ("certified/cifar10_macer.yaml", "model.class_path", "lit_robust.methods.MACER"),
        ("certified/cifar10_macer.yaml", f"{M}.sigma", 0.25),
        ("certified/cifar10_macer.yaml", f"{M}.num_noise_samples", 16),
        ("certified/cifar10_macer.yaml", f"{M}.beta", 16.0),
        ("certified/cifar10_macer.yaml", f"{M}.hinge", 8.0),
        ("certified/cifar10_macer.yaml", f"{M}.radius_weight", 12.0),
        ("certified/cifar10_macer.yaml", f"{M}.lr", 0.01),
        ("certified/cifar10_macer.yaml", f"{M}.weight_decay", 5e-4),
        ("certified/cifar10_macer.yaml", f"{M}.milestones", [200, 400]),
        ("certified/cifar10_macer.yaml", f"{D}.batch_size", 64),
        ("certified/cifar10_macer.yaml", "trainer.max_epochs", 440),
        ("certified/cifar10_macer.yaml", f"{M}.evaluators[SmoothingCertification].init_args",
         {**CERTIFY, "sigma": 0.25}),
    ]),
    *cite(MACER, "certified images: every 20th test image as Cohen et al.'s and SmoothAdv's "
                 "certify.py --skip 20, not rs/certify.py's images 500-999 (README, Deviations "
                 "from the papers)", [
        ("certified/cifar10_macer.yaml", f"{M}.evaluators[SmoothingCertification].init_args",
         {"skip": 20, "max_images": None}),
    ]),
    *cite("SmoothAdv and MACER", "their official training scripts: SGD momentum 0.9, "
                                 "learning rate x0.1 at each milestone, the whole training set", [
        ("certified/*.yaml", f"{M}.optimizer", "sgd"),
        ("certified/*.yaml", f"{M}.momentum", 0.9),
        ("certified/*.yaml", f"{M}.schedule", "multistep"),
        ("certified/*.yaml", f"{M}.gamma", 0.1),
        ("certified/*.yaml", f"{D}.val_size", 0),
    ]),
]


def resolved(name: str) -> dict[str, Any]:
    """The config ``configs/experiments/<name>`` as ``lit-robust --print_config`` resolves it."""
    return resolve_config((EXPERIMENTS / name,))


def _configs() -> list[str]:
    return sorted(str(p.relative_to(EXPERIMENTS)) for folder in COVERED
                  for p in (EXPERIMENTS / folder).glob("*.yaml"))


@pytest.mark.parametrize("name", _configs())
def test_config_holds_the_papers_settings(name: str) -> None:
    config = resolved(name)
    rows = [row for row in SETTINGS if fnmatch(name, row.pattern)]
    assert rows, f"{name} matches no row of SETTINGS; add the paper's settings for it"
    wrong = {f"{row.key} ({row.paper}: {row.source})": (lookup(config, row.key), row.value)
             for row in rows if not close(lookup(config, row.key), row.value)}
    assert not wrong, f"{name}: (found, paper) = {wrong}"


def test_every_row_applies_to_some_config_and_names_its_source() -> None:
    names = _configs()
    unused = [row.pattern for row in SETTINGS if not any(fnmatch(n, row.pattern) for n in names)]
    assert not unused, f"rows match no config: {unused}"
    assert all(row.paper and row.source for row in SETTINGS)


def _cartl_source_of(transfer: str) -> str:
    """The source config whose fixed log folder holds the transfer's ``pretrained``."""
    version = Path(resolved(transfer)["model"]["init_args"]["pretrained"]).parts[2]
    (source,) = [name for name in _configs() if name.startswith("cartl/source_")
                 and resolved(name)["trainer"]["logger"]["init_args"]["version"] == version]
    return source


@pytest.mark.parametrize("name", [n for n in _configs() if n.startswith("cartl/")
                                  and "_from_" in n and "shared_robust" not in n])
def test_cartl_transfer_normalizes_and_builds_as_its_source(name: str) -> None:
    """Frozen blocks and reused statistics only compute what they learned on inputs normalized
    as the source's; the official code normalizes source and target alike."""
    target, source = resolved(name)["model"]["init_args"], resolved(_cartl_source_of(name))[
        "model"]["init_args"]
    for key in ("mean", "std", "backbone", "backbone_kwargs"):
        assert close(target[key], source[key]), (key, target[key], source[key])
    if "neft" in name:
        assert target["k"] == source["k"]  # FDM regularized the input of the NEFT blocks


def test_comparison_catches_a_wrong_value() -> None:
    assert not close(0.0031, 0.003)
    assert not close({"eps": 8 / 255, "steps": 7}, LINF_8)
    assert not close([30, 40], [30, 50])
    assert not close(1, True) and not close(True, 1) and not close("ce", "kl")
    assert close({**LINF_8, "loss": "ce"}, LINF_8) and close(0.0078431372, 2 / 255)
    assert close([30.0, 50.0], [30, 50]) and not close(None, 0)
