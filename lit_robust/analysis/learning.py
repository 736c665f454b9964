"""Does a baseline learn at all? The check a reproduction makes before judging any claim.

A comparison between two fine-tunings says nothing when the baseline itself stays near chance:
every difference is then noise around chance, whatever the methods do. So a reproduction first
tests its baseline and stops with "uninformative at this scale" when the baseline's clean
accuracy on held-out data is not *well* above chance (DESIGN §8b).

"Well above chance" is decided on the test counts, not on the point estimate: the one-sided
99.9 % Clopper–Pearson lower bound of the clean accuracy must reach twice chance
(``2 / classes``). A model that predicts one class only (accuracy ≈ chance on a balanced set)
fails; a model at 4.2 % on 430 images of 43 classes (the bound is 1.8 %, under 4.65 %) fails;
one at 58 % on 300 images of 10 classes (bound 48.9 %, over 20 %) passes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lit_robust.evaluation.certification_stats import clopper_pearson_lower

CONFIDENCE = 0.999
CHANCE_FACTOR = 2.0
UNINFORMATIVE = "uninformative at this scale"


@dataclass(frozen=True)
class LearningCheck:
    """The outcome of :func:`check_learning` (accuracies as fractions).

    Attributes:
        learns: whether the lower bound reaches the threshold.
        accuracy: clean accuracy on the held-out images.
        images: how many held-out images it was measured on.
        classes: classes of the task.
        lower_bound: one-sided :data:`CONFIDENCE` Clopper–Pearson lower bound of ``accuracy``.
        threshold: ``CHANCE_FACTOR / classes``.
        reason: one sentence saying why (for the report).
    """

    learns: bool
    accuracy: float
    images: int
    classes: int
    lower_bound: float
    threshold: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_learning(correct: int, images: int, classes: int, what: str = "the baseline",
                   confidence: float = CONFIDENCE,
                   chance_factor: float = CHANCE_FACTOR) -> LearningCheck:
    """Whether ``correct`` of ``images`` held-out images is well above chance for ``classes``.

    Raises:
        ValueError: for no images, ``correct`` outside [0, images] or fewer than 2 classes.
    """
    if images < 1 or not 0 <= correct <= images:
        raise ValueError(f"need 0 <= correct <= images and images >= 1, got {correct} of "
                         f"{images}")
    if classes < 2:
        raise ValueError(f"a classification task has at least 2 classes, got {classes}")
    accuracy = correct / images
    lower = float(clopper_pearson_lower(correct, images, 1 - confidence))
    threshold = chance_factor / classes
    learns = lower >= threshold
    verb = "reaches" if learns else "is below"
    reason = (f"{what}'s clean accuracy on {images} held-out images is {100 * accuracy:.2f}% "
              f"(its {100 * confidence:g}% lower bound {100 * lower:.2f}% {verb} "
              f"{chance_factor:g} x chance = {100 * threshold:.2f}% for {classes} classes)")
    if not learns:
        reason = f"{UNINFORMATIVE}: {reason}"
    return LearningCheck(learns, accuracy, images, classes, lower, threshold, reason)
