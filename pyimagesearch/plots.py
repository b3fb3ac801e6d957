"""Pictures of a training run (matplotlib, Agg backend: works without a display)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_history(history, path, best_epoch=None):
    """Save train/val loss and accuracy per epoch to `path` (PNG)."""
    epochs = range(1, len(history["loss"]) + 1)
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric, title in ((loss_axis, "loss", "Loss"),
                                (accuracy_axis, "accuracy", "Accuracy")):
        axis.plot(epochs, history[metric], label=f"train {metric}")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], label=f"val {metric}")
        if best_epoch:
            axis.axvline(best_epoch, color="gray", linestyle=":", label=f"kept (epoch {best_epoch})")
        axis.set_title(f"{title} per epoch")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, never 2.5
        axis.grid(alpha=0.3)
        axis.legend()
    accuracy_axis.set_ylim(0, 1.02)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)


def plot_filters(kernel, path, title="first conv layer's filters"):
    """A grid of a conv kernel (kh, kw, in, out): one tile per filter.

    Three input channels are drawn as colour (each filter stretched to its
    own min..max, so the pattern shows whatever its scale); other counts
    show the mean over input channels in grey.
    """
    import numpy as np

    kernel = np.asarray(kernel, dtype=np.float64)
    tiles = [kernel[..., index] for index in range(kernel.shape[-1])]  # each (kh, kw, in)
    figure, axes = _grid(len(tiles), 8, (1.2, 1.2), extra_height=0.5)
    for axis, tile in zip(axes.flat, tiles):
        if tile.shape[-1] != 3:
            tile = tile.mean(axis=-1)
        low, high = tile.min(), tile.max()
        tile = (tile - low) / (high - low) if high > low else np.zeros_like(tile)
        axis.imshow(tile, cmap=None if tile.ndim == 3 else "gray", interpolation="nearest")
    figure.suptitle(f"{title}: {kernel.shape[-1]} of {kernel.shape[0]}x{kernel.shape[1]}"
                    f"x{kernel.shape[2]}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)


def plot_feature_maps(maps, path, title, max_maps=64):
    """The channels of one block's output (h, w, channels) as grey pictures, the busiest first.

    Each picture has its own grey scale (0 = black, its own maximum = white);
    channels that stay 0 on this image (dead for it) are counted in the title.
    """
    import numpy as np

    maps = np.asarray(maps, dtype=np.float64)
    activity = maps.mean(axis=(0, 1))  # (channels,)
    alive = [index for index in np.argsort(-activity, kind="stable") if maps[..., index].max() > 0]
    shown = alive[:max_maps]
    figure, axes = _grid(len(shown), 8, (1.3, 1.3), extra_height=0.6)
    for axis, index in zip(axes.flat, shown):
        axis.imshow(maps[..., index], cmap="gray", vmin=0, interpolation="nearest")
        axis.set_title(str(index), fontsize=7)
    height, width, channels = maps.shape
    figure.suptitle(f"{title}: {len(shown)} of {channels} channels ({height}x{width}), busiest "
                    f"first; {channels - len(alive)} all zero", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)


def plot_grad_cam(image, heat, title, path):
    """The image and the same image under its Grad-CAM heat map (both (S, S, ...)), side by side."""
    figure, (plain, overlaid) = plt.subplots(1, 2, figsize=(7, 3.8))
    _draw_image(plain, image, "image")
    _draw_overlay(overlaid, image, heat, "Grad-CAM")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)


def plot_grad_cam_sheet(items, path, title="Grad-CAM: where the network found its answer"):
    """One tile per image: [(image (S, S, 3), heat (S, S), caption)], four to a row."""
    figure, axes = _grid(len(items), 4, (2.6, 2.9), extra_height=0.4)
    for axis, (image, heat, caption) in zip(axes.flat, items):
        _draw_overlay(axis, image, heat, caption, fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=90)
    plt.close(figure)


def _grid(count, max_columns, tile_inches, extra_height):
    """A figure of `count` tiles, `max_columns` to a row, every axis hidden."""
    columns = min(max_columns, max(1, count))
    rows = max(1, -(-count // columns))
    figure, axes = plt.subplots(rows, columns, squeeze=False, figsize=(
        tile_inches[0] * columns, tile_inches[1] * rows + extra_height))
    for axis in axes.flat:
        axis.axis("off")
    return figure, axes


def _draw_image(axis, image, title):
    axis.imshow(image)
    axis.set_title(title, fontsize=9)
    axis.axis("off")


def _draw_overlay(axis, image, heat, title, fontsize=9):
    axis.imshow(image)
    axis.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
    axis.set_title(title, fontsize=fontsize)
    axis.axis("off")


def figure_png(draw, *args, **kwargs):
    """PNG bytes of a picture that `draw(*args, path, **kwargs)` saves (for pages and logs)."""
    import io

    buffer = io.BytesIO()
    draw(*args, buffer, **kwargs)
    return buffer.getvalue()


def plot_reliability(before, after, path, part="test", temperature=1.0):
    """Reliability diagram: accuracy against confidence per bin, before and after calibration.

    `before`/`after`: confidence.reliability_bins rows. A calibrated model's
    bars sit on the diagonal; bars below it mean over-confidence.
    """
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.3), sharey=True)
    for axis, rows, title in ((axes[0], before, "as trained"),
                              (axes[1], after, f"after temperature scaling (T = {temperature:.2f})")):
        filled = [row for row in rows if row["count"]]
        width = rows[0]["high"] - rows[0]["low"]
        axis.bar([row["low"] for row in filled], [row["accuracy"] for row in filled],
                 width=width, align="edge", color="#4c78a8", edgecolor="white",
                 label="accuracy in the bin")
        # Each bin's mean confidence as a black tick: above the bar's top the
        # model was over-confident there, below it under-confident. (Filled gap
        # bars painted over an under-confident bar hid its real height.)
        axis.hlines([row["confidence"] for row in filled], [row["low"] for row in filled],
                    [row["high"] for row in filled], colors="black", linewidth=2.2,
                    label="mean confidence in the bin")
        for row in filled:
            axis.text(row["low"] + width / 2, 0.02, str(row["count"]), ha="center",
                      fontsize=7, color="white" if row["accuracy"] > 0.08 else "#1d2330")
        axis.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfectly calibrated")
        total = sum(row["count"] for row in filled)
        ece = sum(row["count"] * abs(row["accuracy"] - row["confidence"])
                  for row in filled) / total if total else 0.0
        axis.set_title(f"{title}\nECE {ece:.3f} on {total} {part} images", fontsize=10)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("confidence (top probability)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (images per bin at the bottom)")
    axes[0].legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)
