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
