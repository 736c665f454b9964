"""Build the self-contained bundle a GPU plan runs from (DESIGN §8): at most 60 MiB.

    python benchmarks/device/pack.py twins_rift          # -> benchmarks/device/bundle/
    python benchmarks/device/pack.py perf --out /tmp/bundle --limit-mib 60

The GPU machine reaches no network and receives only the repository's working tree (64 MiB in
all); it has torch, Lightning, timm, torchmetrics, scipy and matplotlib, but not
``jsonargparse`` (with the ``signatures`` extra Lightning's CLI needs) or ``pyautoattack``.
The bundle (an ignored folder) holds what one plan needs beside the code:

- ``wheels/``: pure-Python wheels (``py3-none-any``, so they install on Python 3.12 manylinux
  x86-64) of ``jsonargparse``, ``docstring-parser`` and ``typeshed-client``, built from the
  exact versions installed here, and a slim ``pyautoattack`` wheel: its code without the 42 MB
  example model and the TensorFlow example weights it bundles;
- ``models/<name>.fp16.pt``: source models as half-precision state dicts (the shared robust
  CIFAR-10 ResNet-18 is 43 MB in fp32, 22 MB in fp16); ``run.sh`` turns them back into fp32
  state dicts before the plan loads them as users do;
- ``data/<dataset>.npz``: the data subsets the plan uses, as their image files in one array
  (``paths``, ``offsets``, ``blob``), unpacked by ``run.sh`` into the layout the DataModules
  read: CIFAR-10's and Tiny-ImageNet's JPEG files byte for byte (class folders; the official
  Tiny-ImageNet layout); GTSRB resized to 32×32 by the
  DataModule's own preparation and stored as lossless PNG in Kaggle's layout (the DataModule's
  resize of a 32×32 image is the identity, which packing checks on every image it writes);
- ``manifest.json``: what is inside, with sizes, hashes and where each part came from.

The bundle is written to a temporary folder beside ``--out`` and moved into place only when
complete and within ``--limit-mib``; over the limit, packing stops at once, prints the sizes
and exits with status 2, leaving any earlier bundle as it was.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata
import importlib.resources
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

DEVICE_DIR = Path(__file__).resolve().parent
REPO = DEVICE_DIR.parents[1]
sys.path.insert(0, str(DEVICE_DIR))
from bundle_contents import CONTENTS, MODELS, PlanContents  # noqa: E402

LIMIT_MIB = 60.0
WHEEL_DISTRIBUTIONS = ("jsonargparse", "docstring_parser", "typeshed_client")
SLIM_WHEELS = {"pyautoattack": ("pyautoattack/examples/",)}  # left out of the slim wheel
MANIFEST = "manifest.json"


class BundleTooLarge(RuntimeError):
    """Packing would exceed the size limit; ``entries`` lists what was packed until then."""

    def __init__(self, message: str, entries: list[dict]) -> None:
        super().__init__(message)
        self.entries = entries


@dataclass
class Bundle:
    """A bundle being written: its folder, the size limit and what went in."""

    root: Path
    limit_bytes: int
    entries: list[dict]

    @property
    def size(self) -> int:
        return sum(entry["bytes"] for entry in self.entries)

    def add(self, relative: str, payload: bytes, source: str) -> None:
        """Write one file and account for it; stop as soon as the limit is passed."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        self.entries.append({"path": relative, "bytes": len(payload), "source": source,
                             "sha256": hashlib.sha256(payload).hexdigest()})
        if self.size > self.limit_bytes:
            raise BundleTooLarge(
                f"the bundle would reach {mib(self.size)} MiB with {relative}, over the "
                f"{mib(self.limit_bytes)} MiB limit, so nothing was written; pack fewer images "
                "(benchmarks/device/bundle_contents.py), or raise --limit-mib only if the "
                "working tree still fits the 64 MiB the GPU machine receives",
                list(self.entries))


def mib(size: int) -> str:
    return f"{size / 2**20:.2f}"


# ------------------------------------------------------------------------------- wheels
def wheel_from_installed(distribution: str, leave_out: Sequence[str] = ()) -> tuple[str, bytes]:
    """A wheel rebuilt from an installed pure-Python distribution (its RECORD's files, byte
    for byte, without compiled caches and without the paths under ``leave_out``).

    Raises:
        ValueError: for a distribution that is not pure Python (its wheel would not install
            on another Python version or platform).
    """
    dist = importlib.metadata.distribution(distribution)
    name, version = dist.metadata["Name"], dist.version
    if "Root-Is-Purelib: true" not in (dist.read_text("WHEEL") or ""):
        raise ValueError(f"{name} {version} is not a pure-Python distribution; download its "
                         "wheel for Python 3.12 manylinux x86-64 instead")
    paths = [str(file) for file in dist.files or []]
    info = next(path.split("/")[0] for path in paths if path.endswith(".dist-info/METADATA"))
    skipped = (f"{info}/RECORD", f"{info}/INSTALLER", f"{info}/REQUESTED",
               f"{info}/direct_url.json", f"{info}/WHEEL")
    files = [(str(file), Path(file.locate()).read_bytes()) for file in dist.files or []
             if str(file) not in skipped and "__pycache__" not in str(file)
             and not str(file).startswith("..")
             and not any(str(file).startswith(prefix) for prefix in leave_out)]
    files.append((f"{info}/WHEEL", (b"Wheel-Version: 1.0\nGenerator: lit_robust "
                                     b"benchmarks/device/pack.py\nRoot-Is-Purelib: true\n"
                                     b"Tag: py3-none-any\n")))
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in files]
    files.append((f"{info}/RECORD", ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in sorted(files):
            info_entry = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info_entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info_entry, data)
    return f"{info.removesuffix('.dist-info')}-py3-none-any.whl", buffer.getvalue()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# ------------------------------------------------------------------------------- models
def model_path(name: str, models: Path) -> Path:
    """Where a bundled source model is read from (see :data:`bundle_contents.MODELS`)."""
    if MODELS[name]["file"] == "pyautoattack":
        return Path(str(importlib.resources.files("pyautoattack") / "examples" / "model_test.pt"))
    return models / MODELS[name]["file"]


def half_precision(path: Path) -> bytes:
    """The state dict at ``path`` with every floating-point tensor in fp16."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    half = {key: value.half() if value.is_floating_point() else value
            for key, value in state.items()}
    buffer = io.BytesIO()
    torch.save(half, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------------- data
def files_array(files: Iterator[tuple[str, bytes]]) -> tuple[bytes, dict[str, int]]:
    """Image files as one ``.npz``: ``paths``, ``offsets`` (n + 1) and the concatenated
    ``blob``; written uncompressed (the images are compressed already). Also returns the
    number of images per split (the second folder of each image's path)."""
    paths, blobs = [], []
    counts: dict[str, int] = {}
    for path, data in files:
        paths.append(path)
        blobs.append(np.frombuffer(data, dtype=np.uint8))
        if path.lower().endswith((".jpg", ".jpeg", ".png")):
            split = path.split("/")[1].lower()
            counts[split] = counts.get(split, 0) + 1
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, paths=np.array(paths), offsets=offsets,
             blob=np.concatenate(blobs) if blobs else np.zeros(0, np.uint8))
    return buffer.getvalue(), counts


def cifar10_files(data: Path, train_per_class: int, test_per_class: int
                  ) -> Iterator[tuple[str, bytes]]:
    """The first files (sorted by name) of each class folder of ``cifar10-jpeg``."""
    root = data / "cifar10-jpeg"
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for folder in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            for file in sorted(folder.iterdir())[:count]:
                yield f"cifar10-jpeg/{split}/{folder.name}/{file.name}", file.read_bytes()


def gtsrb_files(data: Path, train_per_class: int | None, test_first: int
                ) -> Iterator[tuple[str, bytes]]:
    """GTSRB in Kaggle's layout, every image resized to 32×32 as the DataModule does and
    stored as PNG: the first ``train_per_class`` rows of each class of ``Train.csv`` (all when
    ``None``) and the first ``test_first`` rows of ``Test.csv``.

    Raises:
        RuntimeError: when the DataModule would not read a written image back exactly.
    """
    from PIL import Image

    from lit_robust.data.transforms import preparations

    _, prepare = preparations("resize", 32)
    root = data / "gtsrb"
    for split, limit in (("Train", train_per_class), ("Test", None)):
        with open(root / f"{split}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        if split == "Test":
            rows = rows[:test_first]
        elif limit is not None:
            taken: dict[str, int] = {}
            kept = []
            for row in rows:
                if taken.get(row["ClassId"], 0) < limit:
                    taken[row["ClassId"]] = taken.get(row["ClassId"], 0) + 1
                    kept.append(row)
            rows = kept
        listing = io.StringIO()
        writer = csv.writer(listing, lineterminator="\n")
        writer.writerow(["ClassId", "Path"])
        for row in rows:
            path = str(Path(row["Path"]).with_suffix(".png"))
            image = _prepared(root / row["Path"], prepare)
            buffer = io.BytesIO()
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG",
                                                                 optimize=True)
            if not torch.equal(_prepared_png(buffer.getvalue(), prepare), image):
                raise RuntimeError(f"GTSRB {row['Path']} does not read back exactly at 32x32")
            writer.writerow([row["ClassId"], path])
            yield f"gtsrb/{path}", buffer.getvalue()
        yield f"gtsrb/{split}.csv", listing.getvalue().encode()


def _prepared(path: Path, prepare) -> torch.Tensor:
    from lit_robust.data.images import read_image

    return prepare(read_image(path))


def _prepared_png(payload: bytes, prepare) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    return prepare(decode_image(torch.frombuffer(bytearray(payload), dtype=torch.uint8),
                                mode=ImageReadMode.RGB))


def tiny_imagenet_files(data: Path) -> Iterator[tuple[str, bytes]]:
    """The Tiny-ImageNet subset's files in the official layout, byte for byte (``words.txt``
    cut to the lines of the subset's 200 classes; the bounding-box files left out)."""
    root = data / "tiny-imagenet-200"
    wnids = set((root / "wnids.txt").read_text().split())
    yield "tiny-imagenet-200/wnids.txt", (root / "wnids.txt").read_bytes()
    words = [line for line in (root / "words.txt").read_text().splitlines(keepends=True)
             if line.split("\t")[0] in wnids]
    yield "tiny-imagenet-200/words.txt", "".join(words).encode()
    yield ("tiny-imagenet-200/val/val_annotations.txt",
           (root / "val" / "val_annotations.txt").read_bytes())
    for file in sorted((root / "val" / "images").iterdir()):
        yield f"tiny-imagenet-200/val/images/{file.name}", file.read_bytes()
    for wnid in sorted(wnids):
        for file in sorted((root / "train" / wnid / "images").iterdir()):
            yield f"tiny-imagenet-200/train/{wnid}/images/{file.name}", file.read_bytes()


DATASETS = {"cifar10": cifar10_files, "gtsrb": gtsrb_files, "tiny_imagenet": tiny_imagenet_files}


# --------------------------------------------------------------------------------- pack
def pack(plan: str, out: Path, data: Path, models: Path, limit_mib: float = LIMIT_MIB) -> dict:
    """Build the bundle of ``plan`` into ``out``; returns the manifest.

    Raises:
        BundleTooLarge: over the limit (nothing is left behind and ``out`` is untouched).
        FileExistsError: when ``out`` exists and is not a bundle (it is never overwritten).
    """
    contents: PlanContents = CONTENTS[plan]
    if out.exists() and not (out / MANIFEST).is_file():
        raise FileExistsError(f"{out} exists and is not a bundle (no {MANIFEST}); choose "
                              "another --out or remove it yourself")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    bundle = Bundle(staging, int(limit_mib * 2**20), [])
    try:
        for distribution in (*WHEEL_DISTRIBUTIONS, *SLIM_WHEELS):
            name, payload = wheel_from_installed(distribution, SLIM_WHEELS.get(distribution, ()))
            bundle.add(f"wheels/{name}", payload, f"installed {distribution}, rebuilt")
        for model in contents.models:
            path = model_path(model, models)
            bundle.add(f"models/{model}.fp16.pt", half_precision(path), f"{path} in fp16")
        counts = {}
        for dataset, kwargs in contents.data.items():
            payload, counts[dataset] = files_array(DATASETS[dataset](data, **kwargs))
            bundle.add(f"data/{dataset}.npz", payload,
                       f"{dataset} from {data}: {json.dumps(kwargs)}")
        manifest = {"plan": plan, "created": datetime.now(timezone.utc).isoformat(
                        timespec="seconds"),
                    "limit_mib": limit_mib, "bytes": bundle.size, "files": bundle.entries,
                    "models": {m: MODELS[m] for m in contents.models},
                    "data": contents.data, "images": counts}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def size_table(entries: list[dict], limit_mib: float) -> str:
    """One line per packed file with its size, then the total against the limit."""
    lines = [f"{'MiB':>8}  file"]
    lines += [f"{mib(entry['bytes']):>8}  {entry['path']}" for entry in entries]
    total = sum(entry["bytes"] for entry in entries)
    lines.append(f"{mib(total):>8}  total (limit {limit_mib:g} MiB)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", choices=sorted(CONTENTS))
    parser.add_argument("--out", type=Path, default=DEVICE_DIR / "bundle")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "LIT_ROBUST_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--models", type=Path, default=Path(os.environ.get(
        "LIT_ROBUST_MODELS", REPO.parent / "shared" / "models")))
    args = parser.parse_args(argv)
    try:
        manifest = pack(args.plan, args.out.resolve(), args.data.resolve(),
                        args.models.resolve(), args.limit_mib)
    except BundleTooLarge as error:
        print(size_table(error.entries, args.limit_mib))
        print(f"pack: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except FileExistsError as error:
        print(f"pack: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(size_table(manifest["files"], args.limit_mib))
    print(f"bundle for {args.plan} written to {args.out}")
    return manifest


if __name__ == "__main__":
    main()
