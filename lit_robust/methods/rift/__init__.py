"""RiFT: robust critical fine-tuning (Zhu et al., ICCV 2023).

- :mod:`~lit_robust.methods.rift.criticality`: module robust criticality (MRC) search;
- :mod:`~lit_robust.methods.rift.interpolation`: θ(α) and the robustness-preserving α rule;
- :mod:`~lit_robust.methods.rift.method`: the :class:`RiFT` LightningModule (search,
  fine-tuning and interpolation in one ``fit``).
"""

from lit_robust.methods.rift.criticality import (
    CriticalityRow,
    candidate_module_names,
    generate_adversarial_set,
    module_robust_criticality,
    project_weight_,
    rank_modules,
)
from lit_robust.methods.rift.interpolation import interpolate_state_dicts, select_alpha
from lit_robust.methods.rift.method import RiFT

__all__ = [
    "CriticalityRow", "RiFT", "candidate_module_names", "generate_adversarial_set",
    "interpolate_state_dicts", "module_robust_criticality", "project_weight_", "rank_modules",
    "select_alpha",
]
