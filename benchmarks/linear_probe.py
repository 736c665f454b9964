"""Linear-probe accuracy of candidate transfer sources on candidate targets (CPU).

    python benchmarks/linear_probe.py --output benchmarks/results/linear_probe_cpu

Choosing a transfer experiment's source by measurement (DESIGN §8b): each source network is
frozen in eval mode, its penultimate features (the 512-d input of the CIFAR ResNet-18's
classifier) are extracted for every training and test image of the target at the size the
transfer configs use (32 px, resized as the DataModule does, no augmentation), and a
multinomial logistic regression is fitted on the standardized training features to
convergence (full-batch L-BFGS). Its L2 penalty is chosen from a grid by the accuracy on a
class-stratified fifth of the training images held out, then the probe is refitted on all
training images with that penalty. Its test accuracy says
how well the frozen features suit the target; a robust fine-tuning from a source whose probe
is at the level of random features starts from nothing better than random initialization.

Candidate sources: ``robust`` (``../shared/models/cifar10_resnet18_fgsm_rs.pt``, the robust
CIFAR-10 ResNet-18), ``standard`` (the standard-trained CIFAR-10 ResNet-18 it was fine-tuned
from, ``pyautoattack``'s ``examples/model_test.pt``) and ``random`` (the same architecture at
its seed-0 initialization). Candidate targets: ``gtsrb`` and ``tiny_imagenet`` (the subsets in
``$LIT_ROBUST_DATA``). The effective rank of the standardized training features (exp of the
entropy of the normalized singular values) is reported beside each probe.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from result_files import write_result_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("robust", "standard", "random")
TARGETS = ("gtsrb", "tiny_imagenet")
L2_PENALTIES = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def source_network(source: str, models: Path) -> nn.Module:
    """The CIFAR ResNet-18 of a candidate source, in eval mode (inputs in [0, 1])."""
    from lit_robust.models.cifar_resnet import resnet18

    net = resnet18(num_classes=10)
    if source == "random":
        torch.manual_seed(0)
        net = resnet18(num_classes=10)
    else:
        path = (models / "cifar10_resnet18_fgsm_rs.pt" if source == "robust"
                else Path(str(importlib.resources.files("pyautoattack") / "examples" /
                              "model_test.pt")))
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def target_data(target: str, batch_size: int):
    """The target's DataModule, set up without augmentation or validation split."""
    from lit_robust.data import GTSRBDataModule, TinyImageNetDataModule

    module = {"gtsrb": GTSRBDataModule, "tiny_imagenet": TinyImageNetDataModule}[target]
    data = module(batch_size=batch_size, num_workers=0, val_size=0, augment=False,
                  image_size=32, resize="resize")
    data.setup("fit")
    data.setup("test")
    return data


@torch.no_grad()
def features(net: nn.Module, loader) -> tuple[Tensor, Tensor]:
    """Penultimate features (the classifier's input) and labels of every batch."""
    captured: list[Tensor] = []
    hook = net.linear.register_forward_hook(lambda _m, args, _o: captured.append(args[0]))
    labels = []
    try:
        for x, y in loader:
            net(x)
            labels.append(y)
    finally:
        hook.remove()
    return torch.cat(captured), torch.cat(labels)


def effective_rank(x: Tensor) -> float:
    """exp(entropy) of the normalized singular values of ``x`` (Roy & Vetterli, 2007)."""
    s = torch.linalg.svdvals(x.double())
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def fit_logistic(x: Tensor, y: Tensor, classes: int, penalty: float,
                 iterations: int = 500) -> nn.Linear:
    """Multinomial logistic regression with an L2 penalty on the weights, by L-BFGS."""
    linear = nn.Linear(x.shape[1], classes).double()
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=iterations,
                                  tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(linear(x), y) + penalty * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear


def accuracy(linear: nn.Linear, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((linear(x).argmax(1) == y).double().mean())


def probe(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
          classes: int) -> dict[str, float]:
    """Choose the penalty on a held-out fifth of ``train``, refit on all of it; accuracies."""
    (x, y), (x_test, y_test) = train, test
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x, x_test = ((x - mean) / std).double(), ((x_test - mean) / std).double()
    generator = torch.Generator().manual_seed(0)
    held = torch.zeros_like(y, dtype=torch.bool)
    for label in y.unique():
        members = (y == label).nonzero().squeeze(1)
        chosen = members[torch.randperm(len(members), generator=generator)]
        held[chosen[: len(members) // 5]] = True
    selection = {penalty: accuracy(fit_logistic(x[~held], y[~held], classes, penalty),
                                   x[held], y[held]) for penalty in L2_PENALTIES}
    penalty = max(selection, key=selection.get)
    linear = fit_logistic(x, y, classes, penalty)
    return {"train_acc": accuracy(linear, x, y), "test_acc": accuracy(linear, x_test, y_test),
            "l2_penalty": penalty, "held_out_acc": selection[penalty],
            "effective_rank": effective_rank(x)}


def measure(sources: Sequence[str], targets: Sequence[str], models: Path,
            batch_size: int = 256) -> list[dict]:
    rows = []
    for target in targets:
        data = target_data(target, batch_size)
        loaders = {"train": data.train_dataloader(), "test": data.test_dataloader()}
        for source in sources:
            start = time.perf_counter()
            net = source_network(source, models)
            train, test = features(net, loaders["train"]), features(net, loaders["test"])
            row = {"source": source, "target": target, "classes": data.num_classes,
                   "train_images": len(train[1]), "test_images": len(test[1]),
                   "chance": 1 / data.num_classes,
                   **probe(train, test, data.num_classes)}
            row["seconds"] = round(time.perf_counter() - start, 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def to_markdown(rows: list[dict], command: str) -> str:
    lines = ["# Linear-probe accuracy of candidate sources on candidate targets (CPU)", "",
             f"`{command}`", "", " ".join(__doc__.split("\n\n")[2].split()), "",
             "| target | source | train / test images | probe test acc | probe train acc | "
             "L2 penalty (held-out acc) | chance | effective rank |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['source']} | {r['train_images']} / {r['test_images']} | "
              f"{100 * r['test_acc']:.2f}% | {100 * r['train_acc']:.2f}% | "
              f"{r['l2_penalty']:g} ({100 * r['held_out_acc']:.2f}%) | "
              f"{100 * r['chance']:.2f}% | {r['effective_rank']:.1f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--models", type=Path,
                        default=Path(os.environ.get("LIT_ROBUST_MODELS",
                                                    REPO.parent / "shared" / "models")))
    parser.add_argument("--output", type=Path, default=None,
                        help="write <output>.json and <output>.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("LIT_ROBUST_DATA", str(REPO.parent / "shared" / "data"))
    rows = measure(args.sources, args.targets, args.models)
    command = "python benchmarks/linear_probe.py " + " ".join(argv or sys.argv[1:])
    if args.output is not None:
        write_result_files(args.output, {"command": command, "l2_penalties": L2_PENALTIES,
                                         "rows": rows}, to_markdown(rows, command.strip()))
    print(to_markdown(rows, command.strip()))
    return rows


if __name__ == "__main__":
    main()
