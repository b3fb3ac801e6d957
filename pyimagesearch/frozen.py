"""Phase one of a pretrained network on small data: the head alone, on cached features.

With the backbone frozen, an image's pooled features (N, F) are the same in every
epoch, so computing them once and fitting the head (dropout + Dense + softmax) on
the arrays costs seconds where a pass of every image through the backbone costs
seconds per epoch. The features are kept in a file beside the decoded-image cache
(dataset.py), keyed by each file's sha256, the network, its weights, image size and
channels, so a second run with other head settings (learning rate, class weights,
split) computes none of them again.

    pooled_features(run, data, settings, log)  (N, F) float32 for every cache row
    fit_head(run, data, settings, log, ...)    model.fit of the head on those arrays

The head model shares its layers (and so its weights) with the full model: what
the head learns is in `run.model`, which is what the checkpoints and the outputs
save. No augmentation in this phase: a frozen backbone sees the same image the same
way, and a flipped or jittered copy would need a pass of its own through it.
"""

import hashlib
import os

import numpy as np

from pyimagesearch import dataset as dataset_lib
from pyimagesearch import persistence

FEATURE_LAYER = "head_dropout"  # its input is the backbone's pooled features
HEAD_LAYERS = ("head_dropout", "logits", "probabilities")
FORMAT = 1  # of the feature cache file


def uses_cached_features(settings):
    """True for a network whose phase one trains on cached features (the Lites)."""
    from pyimagesearch import architecture

    return architecture.networks().get(architecture.arch(settings)).feature_cache


def weights_identity(settings):
    """What names the backbone's weights in the cache key, or None (random: not cached)."""
    weights = settings.get("weights")
    if weights in (None, "none"):
        return None
    if weights == "imagenet":
        from pyimagesearch import pretrained

        return f"imagenet-{pretrained.weights_sha256(settings['arch'])[:16]}"
    with open(weights, "rb") as handle:  # a backbone weights file
        return f"file-{hashlib.file_digest(handle, 'sha256').hexdigest()[:16]}"


def cache_path(settings):
    """The feature cache file for these settings, or None when it would not be reusable."""
    identity = weights_identity(settings)
    if identity is None:
        return None
    return os.path.join(settings["cache_dir"],
                        f"features-{settings['arch']}-{identity}-{settings['image_size']}px-"
                        f"{settings['channels']}ch.npz")


def read_cache(path):
    """{sha256: (F,) features} from a cache file; empty when missing or unreadable."""
    if path is None:
        return {}
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if int(arrays["format"]) != FORMAT:
                return {}
            keys, features = arrays["keys"], arrays["features"]
            if features.ndim != 2 or len(keys) != len(features):
                return {}
            return dict(zip(keys.tolist(), features))
    except (OSError, ValueError, KeyError, EOFError):
        return {}


def write_cache(path, known):
    """Replace the cache file atomically (a killed run leaves the old one whole)."""
    keys = sorted(known)
    features = np.stack([known[key] for key in keys]).astype(np.float32)
    try:
        with persistence.atomic_path(path, ".npz") as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, format=FORMAT, keys=np.asarray(keys), features=features)
    except OSError:
        return False  # a read-only cache folder: the features still serve this run
    return True


def feature_extractor(model):
    """A keras.Model: images (N, S, S, 3) 0-255 -> the pooled features the head reads."""
    import keras

    return keras.Model(model.inputs, model.get_layer(FEATURE_LAYER).input,
                       name=f"{model.name}_pooled")


# Images per backbone pass: Lite0 at 224 px ran as fast at 16 as at 64 (108 vs 112
# images/s on 2 cores) with a quarter of the activation memory (its early maps are
# 112 x 112 x 96 floats an image: 300 MB a tensor at 64)
BATCH_SIZE = 16


def pooled_features(run, data, settings, log, batch_size=BATCH_SIZE):
    """(N, F) float32 features of every row of the image cache, from the file cache
    where it has them; the rest go through the frozen backbone, with progress."""
    if getattr(run, "pooled", None) is not None:
        return run.pooled
    path = cache_path(settings)
    known = read_cache(path)
    hashes = list(data.folder.hashes)
    missing = [row for row, key in enumerate(hashes) if key not in known]
    if missing:
        log(f"[INFO] computing the frozen backbone's features of {len(missing)} image(s) "
            f"({len(hashes) - len(missing)} cached)...")
        extract = feature_extractor(run.model)
        read = dataset_lib.row_reader(data.folder.images)
        progress = dataset_lib._Progress(len(missing), "features", log)
        for start in range(0, len(missing), batch_size):
            rows = missing[start:start + batch_size]
            batch = np.asarray(read(np.asarray(rows)), dtype=np.float32)
            for row, vector in zip(rows, np.asarray(extract.predict_on_batch(batch))):
                known[hashes[row]] = vector.astype(np.float32)
            for _ in rows:
                progress.step()
        if path is not None and not write_cache(path, known):
            log(f"[WARNING] cannot write the feature cache {path}; the features serve this run only")
    else:
        log(f"[INFO] the frozen backbone's features of all {len(hashes)} images are cached")
    run.pooled = np.stack([known[key] for key in hashes]).astype(np.float32) if hashes else \
        np.zeros((0, 0), np.float32)
    return run.pooled


def head_model(model):
    """features (N, F) -> probabilities, made of the model's own head layers (shared weights)."""
    import keras

    size = model.get_layer(FEATURE_LAYER).input.shape[-1]
    inputs = keras.Input(shape=(size,), name="pooled_features")
    x = inputs
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def fit_head(run, data, settings, log, last_epoch, callbacks, class_weights, options):
    """model.fit of the head on the cached features of the training and validation rows."""
    import keras

    from pyimagesearch import architecture

    features = pooled_features(run, data, settings, log)
    classes = len(data.class_names)
    one_hot = np.eye(classes, dtype=np.float32)
    train, val = np.asarray(run.split.train), np.asarray(run.split.val)
    head = head_model(run.model)
    architecture.compile_model(head, settings)
    if run.state.get("lr") is not None and settings.get("lr_schedule") == "plateau":
        head.optimizer.learning_rate.assign(run.state["lr"])  # resumed: where the rule left it
    weights = None if class_weights is None else {
        index: float(weight) for index, weight in enumerate(class_weights)}
    log(f"[INFO] training the head on the cached features for up to {last_epoch} epochs...")
    head.fit(features[train], one_hot[data.labels[train]],
             validation_data=(features[val], one_hot[data.labels[val]]),
             batch_size=settings["batch_size"], epochs=last_epoch,
             initial_epoch=run.state["epoch"], shuffle=True, class_weight=weights,
             callbacks=callbacks, **options)
    return head

