"""Evaluators, the plain-Python runner and the robustness report.

Metric names are flat strings that double as TensorBoard tags (logged as ``test/<name>``):

===============================  ============
evaluator                        metric names
===============================  ============
:class:`CleanAccuracy`           ``clean_acc``
:class:`PGDEvaluator`            ``robust_acc/pgd<steps>[x<restarts>]_<norm>_eps<ε>[_step<step>]`` (the step only when not 2.5·ε/steps), e.g. ``robust_acc/pgd10x3_linf_eps0.03137``
:class:`ExpectedRobustness`      ``expected_robust_acc/<name>`` (mean over an ε grid) and ``robust_acc/...`` per ε
:class:`AutoAttackEvaluator`     ``robust_acc/autoattack_standard_linf_eps0.03137`` and ``.../<attack>`` after each attack
:class:`SanityChecks`            ``sanity/<check>`` (1.0 pass, 0.0 fail) and ``eps_sweep/sanity/eps<ε>``
:func:`check_metrics`            ``sanity/robust_le_clean``, ``sanity/eps0_robust_matches_clean``
:class:`SmoothingCertification`  ``smoothing_sigma<σ>/certified_acc@<r>``, ``.../acr``, ...
:class:`CorruptionRobustness`    ``corruption_acc/mean``, ``corruption_acc/<corruption>``, ...
===============================  ============

Accuracies are fractions in [0, 1]; a ``name=...`` argument replaces the default name.
"""  # noqa: E501

from lit_robust.evaluation.accuracy import CleanAccuracy
from lit_robust.evaluation.autoattack_adapter import AutoAttackEvaluator
from lit_robust.evaluation.base import Evaluator
from lit_robust.evaluation.certification_stats import (
    binomial_two_sided_pvalue,
    certified_radius,
    clopper_pearson_lower,
)
from lit_robust.evaluation.certify_evaluator import SmoothingCertification
from lit_robust.evaluation.corruptions.evaluator import CorruptionRobustness
from lit_robust.evaluation.corruptions.files import open_corrupted
from lit_robust.evaluation.corruptions.generate import CORRUPTIONS, corrupt
from lit_robust.evaluation.expected_robustness import ExpectedRobustness
from lit_robust.evaluation.pgd_evaluator import PGDEvaluator
from lit_robust.evaluation.report import RobustnessReport, finish_evaluation, log_to_tensorboard
from lit_robust.evaluation.runner import evaluate
from lit_robust.evaluation.sanity import (
    SanityCheckError,
    SanityChecks,
    SanityCheckWarning,
    check_metrics,
)
from lit_robust.evaluation.smoothing import ABSTAIN, SmoothedClassifier

__all__ = [
    "ExpectedRobustness",
    "ABSTAIN", "CORRUPTIONS", "AutoAttackEvaluator", "CleanAccuracy", "CorruptionRobustness",
    "Evaluator", "PGDEvaluator",
    "RobustnessReport", "SanityCheckError", "SanityCheckWarning", "SanityChecks",
    "SmoothedClassifier", "SmoothingCertification", "check_metrics", "evaluate",
    "binomial_two_sided_pvalue", "certified_radius", "clopper_pearson_lower", "corrupt",
    "finish_evaluation", "log_to_tensorboard", "open_corrupted",
]
