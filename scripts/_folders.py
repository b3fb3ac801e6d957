"""Writing labelled image arrays as a folder-per-class dataset that train.py reads.

    <folder>/<class>/<index:05d>.png

`index` is the image's position in the source array, so a file can be traced back
to it (`train/7/00042.png` is x_train[42]). Pillow writes PNG without timestamps,
so the same arrays give byte-identical files.
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def check_output(root: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder without --force: before any slow loading."""
    if root.exists() and not root.is_dir():
        fail(f"--output {root} is a file, not a folder")
    if root.exists() and any(root.iterdir()) and not force:
        fail(f"--output {root} is not empty; pass --force to replace the generated folders in it")


def prepare_output(root: Path, generated: list[str]) -> None:
    """Create `root`, removing the `generated` sub-folders of an earlier run (--force)."""
    for name in generated:
        shutil.rmtree(root / name, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)


def write_class_folders(images: np.ndarray, labels: np.ndarray, class_names: list[str],
                        folder: Path, limit: int | None = None) -> list[int]:
    """Write images (N, H, W) grey or (N, H, W, 3) RGB uint8 as folder/<class>/<index>.png.

    With `limit`, keep the first `limit` images of each class. Returns the count per class.
    """
    labels = np.asarray(labels).reshape(-1)  # cifar10's labels are (N, 1)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images (N, H, W) or (N, H, W, 3), got "
                         f"{images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(labels) and not 0 <= labels.min() <= labels.max() < len(class_names):
        raise ValueError(f"labels run from {labels.min()} to {labels.max()}, "
                         f"expected 0 to {len(class_names) - 1}")
    counts = []
    for class_index, class_name in enumerate(class_names):
        class_dir = folder / class_name
        class_dir.mkdir(parents=True, exist_ok=True)
        indices = np.flatnonzero(labels == class_index)[:limit]
        for index in indices:
            Image.fromarray(np.ascontiguousarray(images[index])).save(
                class_dir / f"{index:05d}.png")
        counts.append(len(indices))
    return counts


def describe_counts(counts: list[int]) -> str:
    """'1,797 images, 174 to 183 per class' for a summary line."""
    low, high = min(counts), max(counts)
    per_class = f"{low:,}" if low == high else f"{low:,} to {high:,}"
    return f"{sum(counts):,} images, {per_class} per class"


def fail(message: str) -> None:
    """One line on stderr and exit 2: the user's input needs fixing, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
