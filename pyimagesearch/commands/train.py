"""Train a network (SmallerVGGNet by default, --arch for the others) on a folder-per-class dataset.

    python train.py --dataset dataset --model pokedex.model --labelbin lb.pickle
    python train.py --dataset digits --model digits.model --labelbin digits.pickle \
        --arch cnn --image-size 28 --channels 1
"""

import argparse
import os
import signal
import sys

from pyimagesearch import cli


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description="Train a network (SmallerVGGNet unless --arch) on DATASET/<class>/<images> "
                    "and save the model, the pickled LabelBinarizer and a plot of the "
                    "training curves.")
    paths = parser.add_argument_group("inputs and outputs")
    paths.add_argument("-d", "--dataset", required=True,
                       help="folder with one sub-folder of images per class")
    paths.add_argument("-m", "--model", required=True,
                       help="where to save the model (Keras native format, any file name)")
    paths.add_argument("-l", "--labelbin", required=True,
                       help="where to save the pickled scikit-learn LabelBinarizer")
    paths.add_argument("-p", "--plot", default="plot.png",
                       help="where to save the loss/accuracy plot (default: %(default)s)")
    paths.add_argument("--tensorboard", default=None, metavar="DIR",
                       help="also write TensorBoard logs to DIR (scalars per epoch, graph, "
                            "weight histograms, augmented images, confusion matrix); view with "
                            "tensorboard --logdir DIR")
    paths.add_argument("--cache-dir", default=None,
                       help="folder for the decoded-image cache (default: $POKEDEX_CACHE_DIR "
                            "or MODEL.cache beside the model)")
    network = parser.add_argument_group("network")
    network.add_argument("--arch", default="smallervggnet", metavar="NAME",
                         choices=cli.LazyChoices(architecture_names),
                         help="the network to train, one of %(choices)s (README: Networks; "
                              "default: %(default)s, the tutorial's)")
    network.add_argument("--image-size", type=cli.image_size, default=None,
                         help="images are resized to this many pixels square (default: the "
                              "network's own: 96 for smallervggnet, 28 for the digit "
                              "networks, 32 for the CIFAR ones, 224 for transfer and "
                              "efficientnet-lite0, 260 for efficientnet-lite2); too small "
                              "for the network is an error naming the smallest that works")
    network.add_argument("--channels", type=int, choices=(1, 3), default=None,
                         help="1: the network sees grey images, 3: colour (default: the "
                              "network's own: 1 for the digit and MNIST networks, else 3); "
                              "classify.py needs no flag either way")
    network.add_argument("--weights", default=None, metavar="imagenet|none|FILE",
                         help="efficientnet-lite0/-lite2: ImageNet weights by default, from "
                              "their pip packages (nothing is downloaded); 'none' trains from "
                              "random weights. transfer: 'imagenet' (downloaded once by Keras) "
                              "or a weights file of MobileNetV3Small. Other networks: a "
                              "weights file saved from the same network to start from "
                              "(default: the network's own: ImageNet for the Lites, else random)")
    network.add_argument("--fine-tune-epochs", type=cli.epochs_or_zero, default=None,
                         metavar="N",
                         help="two-phase networks (transfer, efficientnet-lite*): epochs of "
                              "phase two, fine-tuning the whole network at a lower learning "
                              "rate (batch norm frozen) after phase one trained the head on "
                              "the frozen backbone (default: 0 for the Lites, whose head trains "
                              "on cached features in seconds; half of --epochs for transfer)")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=cli.epochs, default=100,
                          help="maximum number of epochs (default: %(default)s, the tutorial's)")
    training.add_argument("--batch-size", type=cli.batch_size, default=32,
                          help="images per step (default: %(default)s)")
    training.add_argument("--lr", type=cli.learning_rate, default=1e-3,
                          help="Adam's initial learning rate (default: %(default)s)")
    training.add_argument("--lr-schedule", choices=("plateau", "tutorial"), default="plateau",
                          help="'plateau': cut the learning rate to a tenth after 2 epochs "
                               "without a 1%% lower validation loss (down to lr/100); 'tutorial': "
                               "the tutorial's decay=lr/epochs, which after 100 epochs is "
                               "still at ~97%% of lr (default: %(default)s)")
    training.add_argument("--patience", type=cli.epochs_or_zero, default=5,
                          help="stop after this many epochs without a 1%% lower validation loss; "
                               "0 never stops early, as the tutorial (default: %(default)s). "
                               "The epoch with the lowest validation loss is always the one saved")
    training.add_argument("--class-weight", choices=("none", "balanced"), default="none",
                          help="'balanced' weighs each training image by n / (classes x "
                               "images of its class), so a 21-image class counts as much as a "
                               "200-image one (default: %(default)s)")
    training.add_argument("--color-augment", action=argparse.BooleanOptionalAction,
                          default=True,
                          help="also jitter brightness, contrast and saturation (not hue) of "
                               "training batches, which helps on photos that differ in light "
                               "and colour from the training images (default: on; "
                               "--no-color-augment keeps the tutorial's augmentation alone)")
    training.add_argument("--val-split", type=cli.fraction, default=0.2,
                          help="share of each class held out for validation, stratified "
                               "(default: %(default)s)")
    training.add_argument("--test-split", type=cli.fraction_or_zero, default=0.15,
                          help="share of each class held out as a test set that training and "
                               "the choice of epoch never see, evaluated at the end; 0 keeps the "
                               "tutorial's 80/20 train/validation split (default: %(default)s)")
    training.add_argument("--augmenter", choices=("layers", "imagedatagenerator", "none"),
                          default="layers",
                          help="'layers': Keras preprocessing layers inside tf.data; "
                               "'imagedatagenerator': the tutorial's literal (deprecated) "
                               "ImageDataGenerator; 'none' (default: %(default)s)")
    training.add_argument("--resume", action="store_true",
                          help="continue an interrupted run from MODEL.run/, and fail if there is "
                               "none (re-running the same command without it also resumes)")
    training.add_argument("--restart", action="store_true",
                          help="discard the checkpoint of an interrupted run (MODEL.run/) "
                               "instead of resuming it; by default re-running the same command "
                               "resumes after the last completed epoch")
    training.add_argument("--checkpoint-every", type=cli.checkpoint_seconds, default=120.0,
                          metavar="SECONDS",
                          help="write a resumable checkpoint (model + optimizer, ~3x the "
                               "weights) when this many seconds have passed since the last "
                               "one, and at once on Ctrl-C/SIGTERM; a hard kill loses at most "
                               "this much work; 0 checkpoints after every epoch "
                               "(default: %(default)s)")
    training.add_argument("--keep-epochs", action="store_true",
                          help="keep every epoch's weights in MODEL.epochs/ (each the size of "
                               "the weights: 35 MB for smallervggnet at 96 px) so that "
                               "evaluate.py --epoch N can score any of them")
    training.add_argument("--seed", type=cli.seed, default=42,
                          help="seed for the split, weights and augmentation "
                               "(default: %(default)s)")
    scale = parser.add_argument_group("many processes and machines (README)")
    scale.add_argument("--workers", type=cli.positive_int, default=1, metavar="N",
                       help="train data-parallel in N processes on this machine (Keras on "
                            "JAX; each takes batch-size/N images of every step); 1: one "
                            "process on TensorFlow, as the tutorial (default: %(default)s)")
    scale.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="several machines: the address of process 0, the same on every "
                            "machine; with --num-processes and --process-id")
    scale.add_argument("--num-processes", type=cli.process_count, default=None, metavar="N",
                       help="several machines: how many processes in all")
    scale.add_argument("--process-id", type=cli.process_id, default=None, metavar="K",
                       help="several machines: this one's number, 0 to N-1; 0 writes the "
                            "checkpoints and the outputs")
    args = parser.parse_args(argv)
    machines = (args.coordinator, args.num_processes, args.process_id)
    if any(value is not None for value in machines):
        if any(value is None for value in machines):
            parser.error("--coordinator, --num-processes and --process-id go together, "
                         "e.g. --coordinator 10.0.0.1:7777 --num-processes 2 --process-id 0")
        if args.process_id >= args.num_processes:
            parser.error(f"--process-id {args.process_id} must be below --num-processes "
                         f"{args.num_processes}")
        if args.workers != 1:
            parser.error("--workers N is for one machine; with --coordinator start one "
                         "train.py per process")
        args.workers = args.num_processes
    if args.workers > 1:
        from pyimagesearch import distributed

        try:
            distributed.check_settings(vars(args))
        except ValueError as error:
            parser.error(str(error))
    if args.resume and args.restart:
        parser.error("--resume and --restart contradict each other; choose one")
    if args.val_split + args.test_split >= 0.9:
        parser.error(f"--val-split {args.val_split} + --test-split {args.test_split} leave "
                     "too little to train on; keep their sum under 0.9")
    if not os.path.isdir(args.dataset):
        parser.error(f"argument -d/--dataset: folder not found: {args.dataset}")
    if args.weights not in (None, "imagenet", "none") and not os.path.isfile(args.weights):
        parser.error(f"argument --weights: file not found: {args.weights} (give 'imagenet', "
                     "'none' or a weights file)")
    if args.tensorboard and os.path.exists(args.tensorboard) and not os.path.isdir(
            args.tensorboard):
        parser.error(f"argument --tensorboard: {args.tensorboard} is a file; give a folder")
    return args


def architecture_names():
    from pyimagesearch import architecture

    return architecture.network_names()


def main(argv=None):
    args = parse_args(argv)
    from pyimagesearch import dataset, distributed, locking, persistence, training

    settings = dict(vars(args))
    settings["cache_dir"] = args.cache_dir or dataset.default_cache_dir(args.model)
    # A polite kill (SIGTERM: logout, `kill`, a scheduler) stops like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if settings["process_id"]:  # a machine other than process 0's: its worker alone
            distributed.run_other_machine(settings)
        else:
            training.train(settings)
    except distributed.WorkerDied as error:
        cli.fail("train.py", str(error), code=1)
    except (dataset.DatasetError, persistence.ArtifactError, locking.LockedError) as error:
        cli.fail("train.py", str(error))
    except training.TrainingDiverged as error:
        cli.fail("train.py", str(error), code=1)
    except training.Interrupted as stop:
        cli.fail("train.py", f"interrupted after {stop.epochs_done} completed epoch(s), "
                             f"progress saved in {stop.run_path}; run the same command again to resume "
                             "(previous model, labels and plot are unchanged)",
                 code=cli.INTERRUPTED)
    except KeyboardInterrupt:
        # Before training (scanning) or after it (evaluating, saving): the final
        # files are renamed into place only at the very end, so none changed.
        cli.fail("train.py", "interrupted; the previous model, labels and plot are unchanged "
                             f"(re-run the same command to continue from {args.model}.run/ "
                             "if it exists)", code=cli.INTERRUPTED)
    except OSError as error:  # full disk, permission denied on an output path
        where = f"{error.filename}: " if error.filename else ""
        cli.fail("train.py", f"{where}{error.strerror or error}", code=1)


if __name__ == "__main__":
    sys.exit(cli.run(main))
