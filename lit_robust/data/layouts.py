"""On-disk layouts of a dataset, how they are found under a root, and the not-found error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lit_robust.data.images import ImageSplit

Split = Literal["train", "val", "test"]
"""``"val"`` is read only from layouts with ``official_val=True``."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for (the message says what was
    searched and which layout is expected)."""


@dataclass(frozen=True)
class DatasetLayout:
    """One way users store a dataset on disk.

    The dataset folder is ``<root>/<subfolder>`` for one of ``subfolders`` or ``<root>`` itself,
    so both ``root=<shared data folder>`` and ``root=<the dataset folder>`` work.

    Attributes:
        description: what the layout is, e.g. ``"torchvision's pickles"``.
        tree: the expected files inside the dataset folder, for error messages.
        subfolders: names the dataset folder may have under the root.
        markers: relative paths that must all exist inside the dataset folder: a file, or a
            folder when the path ends with ``/``.
        read: ``read(dataset_folder, split)`` → the split's labels and images.
        official_val: the layout has an official validation split: ``read(folder, "train")``
            then returns the official training part only and ``read(folder, "val")`` the
            official validation part (the DataModule trains on both unless
            ``val_size="official"``).
    """

    description: str
    tree: str
    subfolders: tuple[str, ...]
    markers: tuple[str, ...]
    read: Callable[[Path, Split], ImageSplit]
    official_val: bool = False

    def candidates(self, root: Path) -> list[Path]:
        """Folders that are checked for this layout, in order."""
        return [root / name for name in self.subfolders] + [root]

    def find(self, root: Path) -> Path | None:
        """The first candidate folder that has every marker, else ``None``."""
        for folder in self.candidates(root):
            if all((folder / marker).is_dir() if marker.endswith("/") else
                   (folder / marker).is_file() for marker in self.markers):
                return folder
        return None


def not_found_message(
    dataset: str, root: Path, layouts: tuple[DatasetLayout, ...], hint: str
) -> str:
    """The error text: the dataset, the root, every folder searched and the layouts expected."""
    lines = [f"{dataset} not found under root '{root}'. Looked for:"]
    for layout in layouts:
        searched = ", ".join(str(folder) for folder in layout.candidates(root))
        lines.append(f"  - {layout.description}, in one of: {searched}")
        lines.append(f"      expected inside it: {layout.tree}")
    lines.append(
        "Pass root=<folder> (default: the LIT_ROBUST_DATA environment variable, else ./data). "
        + hint
    )
    return "\n".join(lines)
