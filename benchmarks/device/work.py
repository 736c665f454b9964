"""Counted work of a plan's runs, and the time it should take on a measured machine.

Work is counted in image passes of the network (the plans use the CIFAR ResNet-18 at 32 px):
``forward`` passes (clean evaluation, corruptions, predictions on noisy copies) and
``backward`` passes (a forward and a gradient: a training step or an attack step), plus the
number of ``lit-robust`` runs, each of which pays a start-up (imports, reading and decoding
the data, building the model). Where the work depends on the data, the count assumes what
the committed results bound: AutoAttack's APGD-CE attacks every image and its targeted
attacks the images still robust after it, counted as :data:`AA_SURVIVING` of them (robust
accuracy under APGD-CE is below 50 % for every model in ``benchmarks/results``).

Time = forward × (seconds per forward image) + backward × (seconds per forward + backward
image) + runs × start-up, with the per-image seconds of :mod:`throughput` measured on the
machine (``calibration_cpu.json`` here; on the GPU machine, measured at the plan's start).
Before any GPU run, the GPU time is estimated from the CPU's measured seconds divided by the
ratio of the two machines' measured matrix-product rates (:func:`gpu_ratio`): this assumes the
network reaches the same fraction of each machine's matrix ceiling, which small 32-px
convolutions on a GPU are unlikely to do, so it is a lower bound on the GPU time; the plan
replaces it with the time from the GPU's own measured passes as soon as it runs there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from throughput import H200_MATMUL_FLOPS

CALIBRATION = Path(__file__).resolve().parent / "calibration_cpu.json"
AA_SURVIVING = 0.5


@dataclass(frozen=True)
class Work:
    """Image passes and runs (see the module docstring)."""

    forward: float = 0.0
    backward: float = 0.0
    runs: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(self.forward + other.forward, self.backward + other.backward,
                    self.runs + other.runs)

    def __mul__(self, factor: float) -> Work:
        return Work(self.forward * factor, self.backward * factor, self.runs)

    def seconds(self, rates: dict[str, float]) -> float:
        """The time on a machine whose per-image seconds and start-up are ``rates``."""
        return (self.forward * rates["forward_s_per_image"]
                + self.backward * rates["forward_backward_s_per_image"]
                + self.runs * rates["startup_s_per_run"])

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def total(works: list[Work]) -> Work:
    result = Work()
    for work in works:
        result = result + work
    return result


def training(images: int, epochs: float, attack_steps: int = 0) -> Work:
    """Training steps: a forward + backward per image, plus ``attack_steps`` attack steps."""
    return Work(backward=images * epochs * (attack_steps + 1))


def head_training(images: int, epochs: float) -> Work:
    """Training of the head alone on a frozen network: one forward per image."""
    return Work(forward=images * epochs)


def validation(images: int, epochs: float, attack_steps: int, attacked_images: int) -> Work:
    """Per epoch: clean accuracy of the validation images, robust accuracy of a few batches."""
    return Work(forward=(images + attacked_images) * epochs,
                backward=attacked_images * attack_steps * epochs)


def evaluation(images: int, pgd_steps: int = 0, pgd_restarts: int = 1, aa_iterations: int = 0,
               aa_target_classes: int = 0, corruption_conditions: int = 0) -> Work:
    """The test evaluators: clean, PGD-k × restarts, AutoAttack (APGD-CE on every image, then
    APGD-T over its target classes on :data:`AA_SURVIVING` of them), generated corruptions."""
    forward = images * (1 + corruption_conditions)
    backward = 0
    if pgd_steps:
        forward += images * (1 + pgd_restarts)
        backward += images * pgd_restarts * pgd_steps
    if aa_iterations:
        forward += images * 2
        backward += images * aa_iterations * (1 + AA_SURVIVING * aa_target_classes)
    return Work(forward=forward, backward=backward)


def certification(images: int, n0: int, n: int) -> Work:
    """Randomized-smoothing certification: ``n0 + n`` noisy forward passes per image."""
    return Work(forward=images * (n0 + n))


def cpu_rates(path: Path = CALIBRATION) -> dict[str, float]:
    """The measured CPU figures (see :mod:`throughput`)."""
    return json.loads(path.read_text())


def gpu_ratio(rates: dict[str, float]) -> float:
    """The H200's measured bf16 matrix rate over this CPU's measured fp32 matrix rate."""
    return H200_MATMUL_FLOPS / rates["matmul_fp32_flops"]


def pre_run_gpu_rates(rates: dict[str, float]) -> dict[str, float]:
    """Per-image seconds on the H200 estimated from the CPU's (:func:`gpu_ratio`); the
    start-up per run is taken as on the CPU (it is mostly Python and data decoding)."""
    ratio = gpu_ratio(rates)
    return {"forward_s_per_image": rates["forward_s_per_image"] / ratio,
            "forward_backward_s_per_image": rates["forward_backward_s_per_image"] / ratio,
            "startup_s_per_run": rates["startup_s_per_run"]}
