"""VISSL checkpoints: the trunk of a ``classy_state_dict`` as a torchvision state dict.

The transfer study's SimCLR source (Vaishnavi, Eykholt and Rahmati, TMLR 2024) is a ResNet-50
trained with VISSL (Goyal et al., https://github.com/facebookresearch/vissl). VISSL saves its
training checkpoints and model-zoo weights as::

    {"classy_state_dict": {"base_model": {"model": {"trunk": {...}, "heads": {...}}, ...},
                           ...},
     "phase_idx": ..., "iteration": ..., ...}

The trunk of a ResNe(X)t holds torchvision's parameter names behind a ``_feature_blocks.``
prefix (``_feature_blocks.conv1.weight``, ``_feature_blocks.layer1.0.bn1.running_mean``, ...);
the heads are the self-supervised projection (SimCLR's MLP), not a classifier, and are
dropped. :func:`vissl_trunk_state` returns the trunk without the prefix, which loads into
``tv_resnet50`` with ``reset_head: true`` (the ``fc`` layer is new), as VISSL's own
``extra_scripts/convert_vissl_to_torchvision.py`` converts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

VISSL_KEY = "classy_state_dict"
_TRUNK_PATH = ("base_model", "model", "trunk")
_PREFIX = "_feature_blocks."
CONVERSION = (
    "convert it to a plain state dict: ckpt = torch.load(path, map_location='cpu'); "
    "trunk = ckpt['classy_state_dict']['base_model']['model']['trunk']; "
    "torch.save({k.removeprefix('_feature_blocks.'): v for k, v in trunk.items()}, "
    "'trunk.pt'), then pass trunk.pt with reset_head: true"
)


def is_vissl_checkpoint(obj: Any) -> bool:
    """Whether a loaded checkpoint is in VISSL's format (has ``classy_state_dict``)."""
    return isinstance(obj, Mapping) and VISSL_KEY in obj


def vissl_trunk_state(obj: Mapping[str, Any], path: str) -> dict[str, Tensor]:
    """The trunk of a VISSL checkpoint with torchvision's key names.

    Args:
        obj: the loaded checkpoint (see :func:`is_vissl_checkpoint`).
        path: its file, for messages.

    Returns:
        ``{key: tensor}`` without the ``_feature_blocks.`` prefix and without the heads.

    Raises:
        ValueError: when the checkpoint has no trunk at
            ``classy_state_dict.base_model.model.trunk`` or the trunk is not a state dict; the
            message says how to convert the file by hand.
    """
    node: Any = obj[VISSL_KEY]
    walked = [VISSL_KEY]
    for key in _TRUNK_PATH:
        if not isinstance(node, Mapping) or key not in node:
            found = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise ValueError(
                f"{path} is a VISSL checkpoint without a model trunk: "
                f"{'.'.join(walked)} holds {found}, not {key!r}; if the trunk is stored "
                f"elsewhere, {CONVERSION}"
            )
        node = node[key]
        walked.append(key)
    if not node or not all(isinstance(k, str) and isinstance(v, Tensor)
                           for k, v in node.items()):
        raise ValueError(
            f"{path}: the VISSL trunk {'.'.join(walked)} is not a state dict of tensors; "
            f"{CONVERSION}"
        )
    if all(key.startswith(_PREFIX) for key in node):
        return {key[len(_PREFIX):]: value for key, value in node.items()}
    return dict(node)
