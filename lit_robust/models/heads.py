"""Finding the classifier head of a plain backbone (no wrapper knowledge, no other imports).

:func:`lit_robust.models.surgery.get_head` builds on this for wrapped models; the input
normalization module uses it to capture penultimate features.
"""

from __future__ import annotations

from torch import nn

HEAD_NAMES = ("linear", "fc", "classifier", "head")


def find_head(net: nn.Module) -> tuple[str, nn.Linear]:
    """The ``nn.Linear`` classifier head of a backbone and its dotted name.

    Looks at timm's ``get_classifier()`` first, then at the attributes ``linear``, ``fc``,
    ``classifier`` and ``head``.

    Raises:
        ValueError: when no ``nn.Linear`` head is found.
    """
    candidates: list[nn.Module] = []
    if hasattr(net, "get_classifier"):
        candidates.append(net.get_classifier())
    candidates.extend(getattr(net, attr) for attr in HEAD_NAMES if hasattr(net, attr))
    names = {id(module): name for name, module in net.named_modules()}
    for module in candidates:
        if isinstance(module, nn.Linear) and id(module) in names:
            return names[id(module)], module
    raise ValueError(
        f"{type(net).__name__} has no nn.Linear classifier head: looked at get_classifier() "
        f"and the attributes {', '.join(HEAD_NAMES)}"
    )
