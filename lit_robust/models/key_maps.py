"""Key maps that turn other state dicts into the plain networks of the zoo.

- **TWINS' dual BatchNorm** (:mod:`lit_robust.models.dual_bn`): a layer saved as
  ``<name>.frozen.*`` and ``<name>.adaptive.*`` becomes the plain ``<name>.*`` of its adaptive
  wing, which is what :func:`~lit_robust.models.dual_bn.export_adaptive` keeps (the network
  computes what the TWINS model computes at inference). Any other method can then start from
  a TWINS checkpoint, TWINS itself included (it splits the plain layers into wings again).
- **RobustBench** (Croce et al., "RobustBench: a standardized adversarial robustness
  benchmark", NeurIPS 2021 Datasets and Benchmarks): its CIFAR ``WideResNet`` uses the zoo's
  names (``conv1``, ``block<i>.layer.<j>.{bn1,conv1,bn2,conv2,convShortcut}``, ``bn1``,
  ``fc``) and its ``PreActResNet(PreActBlockV2, bn_before_fc=True)`` those of
  :class:`~lit_robust.models.preact_resnet.PreActResNet` (``layer<i>.<j>.shortcut.0``, ``bn``,
  ``linear``). Two extras are dropped: the ``sub_block1.*`` copy of the first stage that
  TRADES-style WideResNets carry but never run, and the ``mu`` / ``sigma`` input
  normalization buffers (set the model's ``mean`` / ``std`` to them instead).
"""

from __future__ import annotations

from torch import Tensor

_WINGS = (".frozen.", ".adaptive.")
_WIDE_RESNET_MARKER = "block1.layer.0.conv1.weight"


def fold_dual_batchnorm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Replace every dual layer's ``frozen`` / ``adaptive`` entries by its adaptive wing.

    Only layers saved with both wings are folded; other keys are kept as they are.
    """
    pairs = {key.replace(".frozen.", ".adaptive.", 1) for key in state if ".frozen." in key}
    dual = {key for key in pairs if key in state}
    if not dual:
        return state
    folded: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in dual:
            folded[key.replace(".adaptive.", ".", 1)] = value
        elif ".frozen." in key and key.replace(".frozen.", ".adaptive.", 1) in dual:
            continue
        else:
            folded[key] = value
    return folded


def drop_robustbench_extras(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop RobustBench's ``mu`` / ``sigma`` buffers and a WideResNet's unused
    ``sub_block1.*``."""
    normalization = all(
        key in state and tuple(state[key].shape) == (1, 3, 1, 1) for key in ("mu", "sigma")
    )
    wide_resnet = _WIDE_RESNET_MARKER in state
    return {
        key: value for key, value in state.items()
        if not (normalization and key in ("mu", "sigma"))
        and not (wide_resnet and key.startswith("sub_block1."))
    }


def plain_network_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Both maps: the state dict of a plain zoo network."""
    return drop_robustbench_extras(fold_dual_batchnorm(state))
