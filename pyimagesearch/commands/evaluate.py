"""Evaluate a trained model on a folder-per-class dataset: report, confusion matrix, mistakes.

    python evaluate.py --model pokedex.model --labelbin lb.pickle --dataset my_test_images
    python evaluate.py --model pokedex.model --labelbin lb.pickle --split val [--epoch 7]
    python evaluate.py --model pokedex.model --labelbin lb.pickle --drift new_photos
"""

import os
import sys

import time

import numpy as np

from pyimagesearch import cli, run_files

STARTED = time.monotonic()


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description="Evaluate a model trained by train.py on DATASET/<class>/<images> (classes "
                    "named as in training, any subset of them): print and save a per-class "
                    "report, metrics.json, a confusion matrix and the worst mistakes.")
    parser.add_argument("-m", "--model", required=True, help="trained model file")
    parser.add_argument("-l", "--labelbin", required=True, help="pickled LabelBinarizer")
    parser.add_argument("-d", "--dataset", default=None,
                        help="folder with one sub-folder of images per class (with --split: "
                             "default the folder the model was trained on)")
    parser.add_argument("--split", choices=tuple(run_files.PARTS), default=None,
                        help="score only the images of this part of the model's own training "
                             "split (MODEL.split.json, by content: images changed since "
                             "training are counted as missing)")
    parser.add_argument("--epoch", type=cli.epochs, default=None, metavar="N",
                        help="score epoch N's weights instead of the kept epoch's (needs a "
                             "model trained with train.py --keep-epochs; probabilities "
                             "uncalibrated)")
    parser.add_argument("--drift", default=None, metavar="DIR",
                        help="instead of scoring labelled images, compare a folder of new images "
                             "(any layout, no labels needed) with the model's validation split: "
                             "share called unknown, distance from the training classes, mix of "
                             "predicted classes; says whether retraining is advised")
    parser.add_argument("--output-prefix", default=None,
                        help="files are written as PREFIX.report.txt, PREFIX.metrics.json, "
                             "PREFIX.confusion.png, PREFIX.worst.png and the page "
                             "PREFIX.report.html; a folder (ending in /) gets report.txt, ... "
                             "inside (default: <model>.eval-<dataset folder name>)")
    parser.add_argument("--top-k", type=cli.top_k, default=3,
                        help="also report top-k accuracy (default: %(default)s)")
    parser.add_argument("--batch-size", type=cli.batch_size, default=32,
                        help="images per model call (default: %(default)s)")
    cli.add_input_flags(parser)
    parser.add_argument("--cache-dir", default=None,
                        help="folder for the decoded-image cache (default: $POKEDEX_CACHE_DIR "
                             "or MODEL.cache beside the model, shared with train.py)")
    args = parser.parse_args(argv)
    for flag, path in (("-m/--model", args.model), ("-l/--labelbin", args.labelbin)):
        if cli.file_problem(path):
            parser.error(f"argument {flag}: {cli.file_problem(path)}")
    args.part = None  # with --split: the set of content hashes of that part
    if args.drift is not None:
        if not os.path.exists(args.drift):
            parser.error(f"argument --drift: not found: {args.drift}")
        if args.split or args.epoch or args.dataset:
            parser.error("argument --drift: compares new images with the training data; "
                         "it does not go with -d/--dataset, --split or --epoch")
        return args
    if args.split:
        try:
            trained_on, parts = run_files.read_split(args.model)
        except run_files.RunFileError as error:
            parser.error(f"argument --split: {error}")
        args.part = parts[args.split]
        if args.dataset is None:
            args.dataset = trained_on
            if not os.path.isdir(args.dataset):
                parser.error(f"argument --split: the model was trained on {args.dataset}, "
                             "which is gone; give its new place with -d/--dataset")
    if args.dataset is None:
        parser.error("argument -d/--dataset is required (or --split train|val|test to "
                     "score a part of the model's own training data)")
    if not os.path.isdir(args.dataset):
        parser.error(f"argument -d/--dataset: folder not found: {args.dataset}")
    if args.epoch is not None:
        try:
            run_files.check_epoch(args.model, args.epoch)
        except run_files.RunFileError as error:
            parser.error(str(error))
    prefix = args.output_prefix or default_prefix(args.model, args.dataset, args.split,
                                                  args.epoch)
    for path in page_and_output_paths(prefix):  # before an hour of predictions, not after
        problem = cli.unwritable_reason(path)
        if problem:
            parser.error(f"argument --output-prefix: {problem}")
    from pyimagesearch import persistence

    clash = persistence.first_clash({path: path for path in page_and_output_paths(prefix)},
                                    {"-m/--model": args.model, "-l/--labelbin": args.labelbin})
    if clash is not None:
        (path, _), (flag, _) = clash
        parser.error(f"argument --output-prefix: the report file {path} would overwrite "
                     f"{flag} {getattr(args, flag.split('--')[1])}; choose another prefix")
    return args


def page_path(prefix):
    """The evaluation page beside report.txt: PREFIX.report.html or FOLDER/report.html."""
    from pyimagesearch.evaluation import output_paths

    return output_paths(prefix)["report.txt"][:-len(".txt")] + ".html"


def page_and_output_paths(prefix):
    from pyimagesearch.evaluation import output_paths

    return list(output_paths(prefix).values()) + [page_path(prefix)]


def default_prefix(model_path, dataset_path, split=None, epoch=None):
    name = split or os.path.basename(os.path.normpath(os.path.abspath(dataset_path))) or "dataset"
    return f"{model_path}.eval-{name}" + (f"-epoch{epoch}" if epoch else "")


def main(argv=None):
    args = parse_args(argv)
    if args.drift is not None:
        return check_drift(args)
    from pyimagesearch import dataset, evaluation, persistence

    # Names first (cheap, no TensorFlow): every class folder must be one the model knows.
    try:
        model_classes = [str(c) for c in persistence.load_label_binarizer(args.labelbin).classes_]
        folder_classes, _ = dataset.list_class_files(args.dataset)
    except (persistence.ArtifactError, dataset.DatasetError) as error:
        cli.fail("evaluate.py", str(error))
    unknown = [name for name in folder_classes if name not in model_classes]
    if not folder_classes:
        cli.fail("evaluate.py", f"no class folders in {args.dataset} "
                                f"(expected {args.dataset}/<class>/<images>)")
    if unknown:
        cli.fail("evaluate.py", f"{args.dataset} has classes the model was not trained on: "
                                f"{', '.join(unknown)} (the model knows: {', '.join(model_classes)})")

    from pyimagesearch import inference

    try:
        classifier = inference.Classifier(args.model, args.labelbin,
                                          backend="auto" if args.epoch is None else "keras",
                                          channel_order=args.channel_order,
                                          input_scale=args.input_scale)
        if args.epoch is not None:
            run_files.load_epoch(classifier.model, args.model, args.epoch)
            classifier.head = None  # fitted to the kept epoch's features, not this one's
            print(f"[INFO] scoring epoch {args.epoch}'s weights (uncalibrated probabilities)")
        print(f"[INFO] loading images from {args.dataset}...")
        images = dataset.load_image_folder(args.dataset, classifier.image_size,
                                           args.cache_dir or dataset.default_cache_dir(args.model))
    except (persistence.ArtifactError, dataset.DatasetError, run_files.RunFileError) as error:
        cli.fail("evaluate.py", str(error))
    if args.part is not None:
        images = part_of(images, args.part, args.split)
    if len(images.labels) == 0:
        cli.fail("evaluate.py", f"no readable images in {args.dataset}")
    # The folder's class indices -> the model's output columns, by name.
    to_model = np.array([classifier.class_names.index(name) for name in images.class_names])
    true_labels = to_model[images.labels]  # (N,)

    print(f"[INFO] classifying {len(true_labels)} images, {len(images.skipped)} file(s) skipped")
    probabilities = classifier.predict_arrays(images.images, args.batch_size)  # (N, C)
    prefix = args.output_prefix or default_prefix(args.model, args.dataset, args.split,
                                                  args.epoch)
    try:
        metrics = evaluation.write_report(
            probabilities, true_labels, classifier.class_names, prefix,
            paths=[os.path.join(args.dataset, path) for path in images.paths], top_k=args.top_k,
            extra={"model": args.model, "dataset": args.dataset, "split": args.split,
                   "epoch": args.epoch, "skipped_files": images.skipped})
        write_page(args, classifier, images, true_labels, metrics, prefix, argv)
    except OSError as error:
        cli.fail("evaluate.py", f"cannot write the report: {error}", code=1)


def check_drift(args):
    """evaluate.py --drift DIR: one verdict on a folder of new images (drift.check_folder)."""
    from pyimagesearch import drift, inference, persistence

    try:
        classifier = inference.Classifier(args.model, args.labelbin,
                                          channel_order=args.channel_order,
                                          input_scale=args.input_scale)
    except persistence.ArtifactError as error:
        cli.fail("evaluate.py", str(error))
    if drift.check_folder(classifier, args.drift, args.batch_size) is None:
        cli.fail("evaluate.py", f"--drift: nothing to compare in {args.drift}", code=1)


def part_of(images, hashes, part):
    """The rows of `images` (an ImageFolder) whose content is in `hashes`, one part of the split."""
    import dataclasses

    rows = np.array([row for row, sha256 in enumerate(images.hashes) if sha256 in hashes],
                    dtype=np.int64)
    missing = len(hashes) - len({images.hashes[row] for row in rows})
    name = run_files.PARTS[part]
    print(f"[INFO] {len(hashes) - missing} of the {len(hashes)} {name} images of the split "
          f"found in {images.root or 'the folder'}"
          + (f"; {missing} missing (changed, moved away or deleted since training)"
             if missing else ""))
    return dataclasses.replace(images, paths=[images.paths[row] for row in rows],
                               labels=images.labels[rows], images=Rows(images.images, rows),
                               hashes=[images.hashes[row] for row in rows],
                               phashes=images.phashes[rows])


class Rows:
    """Some rows of the image cache, read a slice at a time (never the whole part in memory)."""

    def __init__(self, images, rows):
        from pyimagesearch.dataset import row_reader

        self.read, self.rows = row_reader(images), rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.read(self.rows[index])


def write_page(args, classifier, images, true_labels, metrics, prefix, argv):
    """PREFIX.report.html: the same page train.py writes, less the training sections."""
    import platform
    import shlex

    from pyimagesearch import persistence, report

    # Grad-CAM needs the Keras model; with the LiteRT copy the mistakes show without it.
    model = classifier.model if classifier.backend == "keras" else None
    results = report.results_context(metrics, "evaluation", model=model,
                                     to_inputs=classifier.model_inputs,
                                     image_size=classifier.image_size)
    counts = report.class_counts(classifier.class_names, true_labels,
                                 {"images": np.arange(len(true_labels))})
    command = shlex.join(["python", "evaluate.py"] + list(sys.argv[1:] if argv is None else argv))
    page = report.evaluation_page(args.model, args.dataset, counts, images.skipped, results,
                                  report.usage(time.monotonic() - STARTED), command,
                                  {"backend": classifier.backend,
                                   "python": platform.python_version()})
    persistence.write_bytes_atomic(page_path(prefix), page.encode("utf-8"))
    print(f"[INFO] wrote {page_path(prefix)}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
