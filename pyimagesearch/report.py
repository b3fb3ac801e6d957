"""One HTML page per run: `<model>.report.html` (train.py) and `<prefix>.report.html` (evaluate.py).

The page is self-contained so it opens from a USB stick: pictures are inlined
as base64 PNGs, the CSS sits inside the template, there are no scripts and no
external requests. The layout is `templates/report.html.j2` (Jinja2), one
block per section; a later section (calibration, ...) is one more key in the
context built here and one more block there.
"""

import base64
import os
import resource
import shlex
import sys

import numpy as np

from pyimagesearch import evaluation, plots
from pyimagesearch.cli import printable

TEMPLATE = "report.html.j2"
MAX_CONFUSIONS = 10  # top confusions listed beside the matrix
MAX_CLASS_ROWS = 40  # more classes than this: the per-class table shows the worst ones only
THUMBNAIL = 112  # px, mistakes


def render(context, template=TEMPLATE):
    """The page for `context` (see the template for the keys), as a string."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    # File names that are not UTF-8 shown as escapes: the page is written as UTF-8.
    return printable(environment.get_template(template).render(**context))


def data_uri(png_bytes):
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def quiet_metrics(probabilities, true_labels, class_names, paths):
    """evaluation.write_report's numbers without its files or printout (the validation part)."""
    return evaluation.compute_metrics(probabilities, true_labels, class_names, paths=paths)[0]


def class_counts(class_names, labels, parts):
    """{"parts": [...], "rows": [{"name", <part>: count, ..., "total"}]} for the data table.

    labels: (N,) class index per image; parts: {part name: row indices into labels}.
    """
    labels = np.asarray(labels)
    rows = []
    for index, name in enumerate(class_names):
        row = {"name": name}
        for part, indices in parts.items():
            row[part] = int(np.sum(labels[np.asarray(indices, dtype=np.int64)] == index))
        row["total"] = sum(row[part] for part in parts)
        rows.append(row)
    return {"parts": list(parts), "rows": rows}


def results_context(metrics, part, model=None, to_inputs=None, image_size=None):
    """The results, confusion and mistakes sections for `metrics` (evaluation.write_report's)."""
    names = metrics["class_names"]
    matrix = np.asarray(metrics["confusion_matrix"])
    title = f"{part}: {metrics['num_images']} images, accuracy {metrics['accuracy']:.1%}"
    confusion = plots.figure_png(evaluation.plot_confusion_matrix, matrix, names, title=title)
    per_class = [dict(values, name=name) for name, values in metrics["per_class"].items()]
    many = len(per_class) > MAX_CLASS_ROWS
    if many:  # 649 rows bury the classes that need attention: show the lowest F1 first
        per_class = sorted(per_class, key=lambda row: (row["f1"], row["name"]))[:MAX_CLASS_ROWS]
    return {
        "part": part,
        "metrics": metrics,
        "per_class": per_class,
        "classes_listed": None if not many else {"shown": len(per_class),
                                                 "of": len(metrics["per_class"])},
        "many_classes": len(names) > evaluation.MAX_MATRIX_CLASSES,
        "confusion_uri": data_uri(confusion),
        "confusions": top_confusions(matrix, names, MAX_CONFUSIONS),
        "mistakes": mistake_tiles(metrics["worst_misclassified"], names, model, to_inputs,
                                  image_size),
    }


top_confusions = evaluation.top_confusions  # the largest off-diagonal cells, largest first


def mistake_tiles(worst, class_names, model=None, to_inputs=None, image_size=None):
    """Thumbnails of the most confident mistakes, with Grad-CAM for the wrong answer if a model is given."""
    from PIL import Image

    from pyimagesearch import visualize
    from pyimagesearch.imageio import UnreadableImageError, load_image

    if model is not None and not visualize.conv_layers(model):
        model = None  # Grad-CAM needs a conv layer
    tiles, drawn = [], []  # drawn: (tile, image) of the mistakes whose file could be read
    for mistake in worst:
        tile = dict(mistake, name=os.path.basename(mistake["path"] or f"#{mistake['index']}"),
                    image_uri=None, heat_uri=None)
        tiles.append(tile)
        if mistake["path"] is None:
            continue
        try:
            image = load_image(mistake["path"], image_size or THUMBNAIL)  # (S, S, 3) uint8 RGB
        except UnreadableImageError:
            continue
        tile["image_uri"] = data_uri(png_bytes(Image.fromarray(image).resize((THUMBNAIL, THUMBNAIL))))
        drawn.append((tile, image))
    if model is not None and drawn:  # Grad-CAM for the wrong answers, all in one pass
        images = np.stack([image for _, image in drawn])
        heats, _, _ = visualize.grad_cams(model, to_inputs(images), [
            class_names.index(tile["predicted"]) for tile, _ in drawn])
        for (tile, image), heat in zip(drawn, heats):
            tile["heat_uri"] = data_uri(png_bytes(_overlay(image, visualize.upsample(
                heat, image.shape[0])).resize((THUMBNAIL, THUMBNAIL))))
    return tiles


def _overlay(image, heat):
    """The image under a jet-coloured heat map (both (S, S, ...)), as a PIL image."""
    from matplotlib import colormaps
    from PIL import Image

    colours = colormaps["jet"](heat)[..., :3] * 255  # (S, S, 3)
    blended = 0.55 * image + 0.45 * colours
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))


def png_bytes(image):
    """`image` (a PIL image) encoded as PNG."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def usage(seconds):
    """{"seconds", "peak_memory_mib"} of this process so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_mib = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return {"seconds": float(seconds), "peak_memory_mib": float(peak_mib)}


def training_command(settings):
    """The train.py command line that reproduces a run, every resolved flag spelled out."""
    words = ["python", "train.py"]
    for key, value in settings.items():
        if key in ("resume", "restart") or value is None:
            continue
        words += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(words)


def calibration_context(calibration):
    """The page's confidence section: the reliability diagram and its figures, or None."""
    if not calibration:
        return None
    from pyimagesearch import plots

    png = plots.figure_png(plots.plot_reliability, calibration["bins_before"],
                           calibration["bins_after"], part=calibration["part"],
                           temperature=calibration["temperature"])
    return {**{key: value for key, value in calibration.items() if not key.startswith("bins_")},
            "plot_uri": data_uri(png)}


def training_page(description, history, counts, results, usage, plot_png, calibration=None):
    """The run page of a training run.

    description: training.describe's dict; history: per-epoch lists (loss,
    accuracy, val_loss, val_accuracy, seconds); counts: {class: {"train",
    "validation", "test"}}; results: results_context(...); usage: usage(...).
    """
    epochs = [{"epoch": index + 1, **{key: history[key][index] for key in (
        "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr") if key in history
        and index < len(history[key])}} for index in range(len(history["loss"]))]
    return render({
        "kind": "training", "title": f"Training run: {os.path.basename(description['settings']['model'])}",
        "description": description, "counts": counts, "epochs": epochs,
        "plot_uri": data_uri(plot_png), "results": results, "usage": usage,
        "settings": description["settings"], "versions": description["versions"],
        "skipped": description["skipped_files"],
        "command": training_command(description["settings"]),
        "training_seconds": float(sum(history.get("seconds", []))),
        "calibration": calibration,
    })


def evaluation_page(model_path, dataset, counts, skipped, results, usage, command, versions):
    """The page of an evaluate.py run: the same sections, less the training ones."""
    return render({
        "kind": "evaluation",
        "title": f"Evaluation: {os.path.basename(model_path)} on {dataset}",
        "description": None, "counts": counts, "epochs": [], "plot_uri": None,
        "results": results, "usage": usage, "settings": {"model": model_path,
                                                        "dataset": dataset},
        "versions": versions, "skipped": skipped, "command": command, "training_seconds": None,
        "calibration": None,
    })
