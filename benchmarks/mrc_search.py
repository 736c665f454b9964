"""RiFT's MRC search against a direct re-run of the paper code's structure, in one run.

Both sides compute the module robust criticality of every Conv2d / Linear of the same model on
the same adversarial set (PGD-10, L∞ 8/255, step 2/255, made once from held-out CIFAR-10
training images), with the same settings and the same per-epoch shuffling:

- reference (the structure of ``layer_sharpness`` in the paper's code): a deep copy of the
  model per module, ``torch.optim.SGD(lr=1)`` on −CE over the copy's parameters (only the
  module's weight requiring grad), the projection through ``state_dict`` / ``load_state_dict``
  once per epoch, and a separate no-grad evaluation pass over the set after every epoch;
- :func:`lit_robust.methods.rift.module_robust_criticality`: the weight perturbed and restored
  in place, and the computation before each module done once and reused.

Two deliberate alignments keep the two comparable number for number: the reference starts its
running maximum at the unperturbed loss (the paper's code starts at 0, which only matters when
every epoch lowers the loss), and its evaluation pass reads the set in a fixed order (the mean
loss does not depend on the order; its shuffled loader would otherwise consume draws from the
shuffling stream). The script reports the speed ratio (target ≥ 1.5×), whether the module
ranking is the same, and the largest MRC difference.

On a busy shared CPU, ``--threads 1 --clock process`` measures the process's CPU time, which
other processes barely disturb.

Example::

    python benchmarks/mrc_search.py --images 128 --epochs 2 --threads 1 --clock process
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from lit_robust.attacks import PGDAttack
from lit_robust.data import CIFAR10DataModule
from lit_robust.methods.rift import (
    candidate_module_names,
    generate_adversarial_set,
    module_robust_criticality,
)
from lit_robust.models.checkpoint import load_weights
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.zoo import build_backbone

SHARED_MODEL = "cifar10_resnet18_fgsm_rs.pt"


class EpochPermutation(Sampler[int]):
    """One ``randperm`` per epoch from ``generator`` (``RandomSampler`` draws two)."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size = size
        self.generator = generator

    def __iter__(self):  # noqa: ANN204 - an iterator of indices
        return iter(torch.randperm(self.size, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.size


def reference_mrc(model: nn.Module, adv: Tensor, labels: Tensor, epsilon: float, epochs: int,
                  batch_size: int, seed: int) -> dict[str, float]:
    """MRC per module with the paper code's structure (see the module docstring)."""
    dataset = TensorDataset(adv, labels)
    generator = torch.Generator().manual_seed(seed)
    ascent = DataLoader(dataset, batch_size=batch_size,
                        sampler=EpochPermutation(len(dataset), generator))
    ordered = DataLoader(dataset, batch_size=batch_size)
    criterion = nn.CrossEntropyLoss()

    def mean_loss(net: nn.Module) -> float:
        total = 0.0
        with torch.no_grad():
            for inputs, targets in ordered:
                total += criterion(net(inputs), targets).item() * targets.shape[0]
        return total / len(labels)

    model.eval()
    origin_loss = mean_loss(model)
    names = {f"net.{name}.weight": name for name in candidate_module_names(model)}
    result = {}
    for layer_name, _ in model.named_parameters():
        if layer_name not in names:
            continue
        cloned = copy.deepcopy(model)
        for name, param in cloned.named_parameters():
            param.requires_grad = name == layer_name
            if name == layer_name:
                init_param = param.detach().clone()
        optimizer = torch.optim.SGD(cloned.parameters(), lr=1)
        max_loss = origin_loss
        for _ in range(epochs):
            for inputs, targets in ascent:
                optimizer.zero_grad()
                loss = -1 * criterion(cloned(inputs), targets)
                loss.backward()
                optimizer.step()
            state = cloned.state_dict()
            diff = state[layer_name] - init_param
            times = torch.linalg.norm(diff) / torch.linalg.norm(init_param)
            if times > epsilon:
                state[layer_name] = copy.deepcopy(init_param + diff / times * epsilon)
                cloned.load_state_dict(state)
            max_loss = max(max_loss, mean_loss(cloned))
        result[names[layer_name]] = max_loss - origin_loss
    return result


def held_out_batches(images: int, batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """``images`` class-balanced held-out (validation) images of the CIFAR-10 training split."""
    data = CIFAR10DataModule(samples_per_class=1, val_size=images, batch_size=batch_size,
                             num_workers=0)
    data.setup("fit")
    return list(data.val_dataloader())


def build_model(models_root: Path) -> nn.Module:
    net = build_backbone("resnet18", num_classes=10)
    load_weights(net, str(models_root / SHARED_MODEL))
    return NormalizedClassifier(net, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]).eval()


def timed(function: Callable[[], object], clock: Callable[[], float]) -> tuple[object, float]:
    start = clock()
    result = function()
    return result, clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=128, help="held-out images attacked")
    parser.add_argument("--epochs", type=int, default=2, help="ascent epochs per module")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall")
    parser.add_argument("--models-root", type=Path, default=Path(os.environ.get(
        "LIT_ROBUST_MODELS", Path(__file__).resolve().parents[2] / "shared" / "models")))
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "process" else time.perf_counter
    torch.manual_seed(args.seed)

    model = build_model(args.models_root)
    batches = held_out_batches(args.images, args.batch_size)
    adv, labels = generate_adversarial_set(model, batches, PGDAttack())

    ours, ours_seconds = timed(lambda: module_robust_criticality(
        model, adv, labels, epsilon=args.epsilon, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed), clock)
    reference, reference_seconds = timed(lambda: reference_mrc(
        model, adv, labels, args.epsilon, args.epochs, args.batch_size, args.seed), clock)

    ours_mrc = {row.module: row.mrc for row in ours}
    ours_rank = sorted(ours_mrc, key=ours_mrc.get)
    reference_rank = sorted(reference, key=reference.get)
    result = {
        "model": f"ResNet-18 ({SHARED_MODEL})",
        "images": len(labels), "epochs": args.epochs, "batch_size": args.batch_size,
        "modules": len(ours_mrc), "threads": torch.get_num_threads(), "clock": args.clock,
        "reference_seconds": round(reference_seconds, 2),
        "lit_robust_seconds": round(ours_seconds, 2),
        "speedup": round(reference_seconds / ours_seconds, 3),
        "same_ranking": ours_rank == reference_rank,
        "same_least_critical": ours_rank[0] == reference_rank[0],
        "max_abs_mrc_difference": max(abs(ours_mrc[m] - reference[m]) for m in ours_mrc),
        "least_critical": ours_rank[:3],
        "mrc": {m: round(v, 5) for m, v in ours_mrc.items()},
        "reference_mrc": {m: round(v, 5) for m, v in reference.items()},
    }
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
