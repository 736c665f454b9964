"""Backbones, input normalization, checkpoint loading and model surgery."""

from lit_robust.models.blocks import (
    BlockLayout,
    block_count,
    forward_from,
    forward_until,
    freeze_all_but_last,
    register_block_layout,
)
from lit_robust.models.checkpoint import (
    CheckpointMismatchError,
    load_state_dict_file,
    load_weights,
)
from lit_robust.models.cifar_resnet import CifarResNet, resnet18, resnet34, resnet50
from lit_robust.models.dual_bn import (
    DualBatchNorm2d,
    convert_to_dual_bn,
    dual_batchnorms,
    export_adaptive,
    set_wing,
    use_wing,
)
from lit_robust.models.modes import eval_mode, mode
from lit_robust.models.normalize import Normalize, NormalizedClassifier
from lit_robust.models.preact_resnet import PreActResNet, preact_resnet18
from lit_robust.models.spectral import (
    SpectralScaling,
    apply_neft,
    fold_spectral_scaling,
    power_iteration_step,
)
from lit_robust.models.surgery import (
    freeze,
    get_head,
    named_candidate_modules,
    replace_head,
    set_bn_eval,
    unfreeze,
)
from lit_robust.models.tiny import TinyCNN
from lit_robust.models.wide_resnet import WideResNet, wrn_28_4, wrn_34_10
from lit_robust.models.zoo import (
    available_backbones,
    build_backbone,
    build_classifier,
    register_backbone,
)

__all__ = [
    "BlockLayout", "SpectralScaling", "apply_neft", "block_count",
    "fold_spectral_scaling", "forward_from", "forward_until", "freeze_all_but_last",
    "power_iteration_step", "register_block_layout",
    "CheckpointMismatchError", "CifarResNet", "DualBatchNorm2d", "convert_to_dual_bn",
    "dual_batchnorms", "eval_mode", "export_adaptive", "mode", "set_wing", "use_wing",
    "Normalize", "NormalizedClassifier",
    "PreActResNet", "TinyCNN", "WideResNet", "available_backbones", "build_backbone",
    "build_classifier", "freeze", "get_head", "load_state_dict_file", "load_weights",
    "named_candidate_modules", "preact_resnet18", "register_backbone", "replace_head",
    "resnet18", "resnet34", "resnet50", "set_bn_eval", "unfreeze", "wrn_28_4", "wrn_34_10",
]
