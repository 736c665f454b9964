"""Load backbone weights from the checkpoint formats people actually have.

Understood formats (all read with ``torch.load(..., weights_only=True)``):

- a plain state dict (``torch.save(net.state_dict())``), also of a
  :class:`~lit_robust.models.normalize.NormalizedClassifier` (``net.*`` / ``normalize.*``);
- a Lightning checkpoint: ``state_dict`` with the classifier under ``model.`` (keys like
  ``model.net.layer1.0.conv1.weight`` and ``model.normalize.mean``); other submodules of the
  LightningModule are ignored;
- the MadryLab ``robustness`` / robust-models-transfer format: a ``model`` or ``state_dict``
  entry with ``module.model.*`` weights next to ``module.normalizer.*`` and an attacker copy
  ``module.attacker.model.*`` (only ``module.model.*`` is used);
- any of these saved from ``DataParallel``/DDP (a ``module.`` prefix on every key), or nested
  under ``model``/``state_dict`` next to training state (epoch, optimizer, ...);
- torchvision and timm weights: their plain state dicts (``.pth``, or ``.safetensors`` as
  timm's pre-trained weights come; a timm training checkpoint holds an ``argparse.Namespace``
  that ``weights_only`` loading refuses: save its ``state_dict`` entry on its own);
- a TWINS checkpoint: dual BatchNorm layers load as their adaptive wing, and RobustBench's
  CIFAR WideResNet / PreAct ResNet state dicts (see :mod:`lit_robust.models.key_maps`);
- a VISSL checkpoint (``classy_state_dict``): its model trunk, as torchvision names it (see
  :mod:`lit_robust.models.vissl`).

Normalization buffers are dropped: the result is the backbone's state dict, and the
normalization to use is a property of the model's configuration.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lit_robust.models.key_maps import plain_network_state
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.spectral import fold_spectral_state_dict, restore_branch_averaging
from lit_robust.models.surgery import get_head
from lit_robust.models.vissl import is_vissl_checkpoint, vissl_trunk_state

UNDERSTOOD_FORMATS = (
    "a plain state dict (name -> tensor), optionally with a DataParallel 'module.' prefix",
    "a Lightning checkpoint ('state_dict' with the classifier under 'model.')",
    "the robustness / robust-models-transfer format ('model' or 'state_dict' with "
    "'module.model.*', 'module.normalizer.*', 'module.attacker.*')",
    "a dict holding one of these under 'model' or 'state_dict' next to training state",
    "a .safetensors file of weights (timm's pre-trained weights)",
    "a VISSL checkpoint ('classy_state_dict' with the model's trunk)",
)

_WRAPPER_KEYS = ("state_dict", "model")
_ROBUSTNESS_PREFIXES = ("model.", "normalizer.", "attacker.")


class CheckpointReadError(ValueError):
    """A checkpoint file exists but cannot be read (truncated, corrupt, not a checkpoint)."""


def read_error(path: str, error: BaseException) -> CheckpointReadError:
    """The error for a checkpoint file ``torch.load`` could not read, naming the file."""
    return CheckpointReadError(
        f"cannot read the checkpoint file {path}: it is truncated or corrupt, or not a PyTorch "
        f"checkpoint (an interrupted download, copy or save leaves such a file; fetch or save "
        f"it again). {type(error).__name__}: {error}"
    )


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the network.

    Attributes:
        missing: keys the network has but the checkpoint lacks.
        unexpected: keys the checkpoint has but the network lacks.
        mismatched: ``{key: (checkpoint shape, network shape)}`` for keys in both.
    """

    def __init__(
        self,
        message: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


def load_state_dict_file(
    path: str | os.PathLike[str], map_location: Any = "cpu"
) -> dict[str, Tensor]:
    """Read a checkpoint file and return the backbone's state dict with clean key names.

    Args:
        path: checkpoint file in one of the formats listed in this module's docstring.
        map_location: passed to ``torch.load``.

    Returns:
        ``{key: tensor}`` with wrapper prefixes removed (``module.``, ``model.``, ``net.``) and
        normalization / attacker entries dropped.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        CheckpointReadError: when the file is truncated, corrupt or not a checkpoint.
        ValueError: when the file holds anything other than the understood formats, or
            objects that ``weights_only`` loading refuses.
    """
    path = os.fspath(path)
    return _backbone_state(_load_object(path, map_location), path)


def _load_object(path: str, map_location: Any = "cpu") -> Any:
    """What a checkpoint file holds (``torch.load(..., weights_only=True)`` or safetensors)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device=str(map_location))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError) as error:
        raise read_error(path, error) from error
    except pickle.UnpicklingError as error:
        if "unsupported global" not in str(error).lower():
            raise read_error(path, error) from error
        raise ValueError(
            f"{path} holds objects that torch.load(weights_only=True) refuses to unpickle; "
            f"save the weights as a state dict (or allow the classes named below with "
            f"torch.serialization.add_safe_globals if you trust the file). {error}"
        ) from error


# (mean key, std key) suffixes of the normalization a checkpoint carries: lit_robust's
# Normalize, the robustness library's InputNormalize, RobustBench's mu / sigma buffers.
_NORMALIZATION_KEYS = (("normalize.mean", "normalize.std"),
                       ("normalizer.new_mean", "normalizer.new_std"),
                       ("mu", "sigma"))


def read_normalization(
    path: str | os.PathLike[str],
) -> tuple[list[float], list[float]] | None:
    """The input normalization a checkpoint was trained with, if it carries one.

    lit_robust checkpoints (Lightning or plain ``NormalizedClassifier`` state dicts), the
    robustness / robust-models-transfer format (``normalizer.new_mean``) and RobustBench's
    ``mu`` / ``sigma`` buffers store it; plain backbone state dicts (e.g. the official code of
    TWINS, CARTL and RiFT, which normalize in the data loader) do not, and give ``None``.

    Returns:
        ``(mean, std)`` as per-channel lists, or ``None``.

    Raises:
        The errors of :func:`load_state_dict_file` for a missing or unreadable file.
    """
    path = os.fspath(path)
    obj = _load_object(path)
    if _is_state_dict(obj):
        state = obj
    elif isinstance(obj, Mapping):
        state = next((obj[k] for k in _WRAPPER_KEYS if _is_state_dict(obj.get(k))), {})
    else:
        return None
    for mean_suffix, std_suffix in _NORMALIZATION_KEYS:
        means = [k for k in state if k == mean_suffix or k.endswith(f".{mean_suffix}")]
        for mean_key in means:
            if "attacker." in mean_key:
                continue
            std_key = mean_key[: len(mean_key) - len(mean_suffix)] + std_suffix
            if std_key in state:
                return (state[mean_key].flatten().tolist(), state[std_key].flatten().tolist())
    return None


def load_weights(
    net: nn.Module, path: str | os.PathLike[str], *, strict: bool = True, skip_head: bool = False
) -> None:
    """Load a checkpoint file into a backbone (not its ``NormalizedClassifier`` wrapper).

    Args:
        net: the backbone to fill in place.
        path: checkpoint file (see :func:`load_state_dict_file`).
        strict: when ``True`` every key must match both ways; when ``False`` the common keys
            are loaded and the others reported with a warning. Shape mismatches are errors
            either way.
        skip_head: ignore the classifier head (found by
            :func:`~lit_robust.models.surgery.get_head`) on both sides and keep the network's
            own head, e.g. for transfer to a different number of classes.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: for an unknown file format.
        CheckpointMismatchError: listing missing, unexpected and shape-mismatched keys.
        TypeError: when given a ``NormalizedClassifier`` instead of its backbone.

    A checkpoint of CARTL's non-expansive fine-tuning loads as plain weights: its spectral
    parametrizations are folded into β·W/σ(W) and the blocks that held them average their
    residual branches, as they did during fine-tuning.
    """
    if isinstance(net, NormalizedClassifier):
        raise TypeError(
            "load_weights fills a backbone; pass the classifier's .net (its normalization is "
            "configured, not loaded)"
        )
    state, spectrally_scaled = fold_spectral_state_dict(load_state_dict_file(path))
    expected = net.state_dict()
    head_name = get_head(net)[0] if skip_head else None

    def is_head(key: str) -> bool:
        return head_name is not None and key.startswith(f"{head_name}.")

    state = {k: v for k, v in state.items() if not is_head(k)}
    expected_keys = [k for k in expected if not is_head(k)]
    missing = [k for k in expected_keys if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = {
        k: (tuple(state[k].shape), tuple(expected[k].shape))
        for k in expected_keys
        if k in state and state[k].shape != expected[k].shape
    }
    if mismatched or (strict and (missing or unexpected)):
        hint_head = None if skip_head else _head_name_or_none(net)
        message = _mismatch_message(net, os.fspath(path), missing, unexpected, mismatched,
                                    hint_head)
        raise CheckpointMismatchError(message, missing, unexpected, mismatched)
    if missing or unexpected:
        warnings.warn(
            f"loaded {os.fspath(path)} partially: {_key_report(missing, unexpected)}",
            stacklevel=2,
        )
    net.load_state_dict(state, strict=False)
    if spectrally_scaled:
        restore_branch_averaging(net, spectrally_scaled)


def _head_name_or_none(net: nn.Module) -> str | None:
    try:
        return get_head(net)[0]
    except ValueError:
        return None


def _key_report(missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) (in the network, not in the checkpoint): "
                     f"{', '.join(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (in the checkpoint, not in the "
                     f"network): {', '.join(unexpected)}")
    return "; ".join(parts)


def _mismatch_message(
    net: nn.Module,
    path: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
    head_name: str | None,
) -> str:
    lines = [f"checkpoint {path} does not fit {type(net).__name__}:"]
    if missing or unexpected:
        lines.append(_key_report(missing, unexpected))
    if mismatched:
        shapes = ", ".join(
            f"{k}: checkpoint {list(a)} vs network {list(b)}" for k, (a, b) in mismatched.items()
        )
        lines.append(f"{len(mismatched)} shape mismatch(es): {shapes}")
    if head_name and any(k.startswith(f"{head_name}.") for k in mismatched):
        lines.append(
            "the classifier head differs (another number of classes?): set reset_head: true "
            "(--model.init_args.reset_head true; skip_head=True in load_weights) to start from "
            "a new head, or set num_classes to match the checkpoint"
        )
    return "\n".join(lines)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _backbone_state(obj: Any, path: str) -> dict[str, Tensor]:
    if is_vissl_checkpoint(obj):
        obj = vissl_trunk_state(obj, path)
    is_lightning = isinstance(obj, Mapping) and "pytorch-lightning_version" in obj
    if _is_state_dict(obj):
        state = dict(obj)
    elif isinstance(obj, Mapping) and any(_is_state_dict(obj.get(k)) for k in _WRAPPER_KEYS):
        state = dict(next(obj[k] for k in _WRAPPER_KEYS if _is_state_dict(obj.get(k))))
    else:
        found = list(obj)[:20] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(
            f"cannot read {path}: found {found}; understood formats: "
            + "; ".join(UNDERSTOOD_FORMATS)
        )
    state = _strip_shared_prefix(state, "module.")
    if is_lightning or _all_start_with(state, _ROBUSTNESS_PREFIXES):
        state = _keep_prefix(state, "model.")
        if not state:
            raise ValueError(
                f"{path} has no weights under 'model.' (the classifier of a lit_robust "
                f"LightningModule, or the robustness format's model)"
            )
    if "normalize.mean" in state and _all_start_with(state, ("net.", "normalize.")):
        state = _keep_prefix(state, "net.")
    return plain_network_state(state)


def _all_start_with(state: Mapping[str, Tensor], prefixes: tuple[str, ...]) -> bool:
    return all(k.startswith(prefixes) for k in state) and any(
        k.startswith(prefixes[0]) for k in state
    )


def _strip_shared_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _keep_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
