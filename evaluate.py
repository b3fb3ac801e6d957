"""Evaluate a trained model on a folder-per-class dataset: report, confusion matrix, mistakes.

    python evaluate.py --model pokedex.model --labelbin lb.pickle --dataset my_test_images
"""

import os
import sys

import time

import numpy as np

from pyimagesearch import cli

STARTED = time.monotonic()


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description="Evaluate a model trained by train.py on DATASET/<class>/<images> (classes "
                    "named as in training, any subset of them): print and save a per-class "
                    "report, metrics.json, a confusion matrix and the worst mistakes.")
    parser.add_argument("-m", "--model", required=True, help="trained model file")
    parser.add_argument("-l", "--labelbin", required=True, help="pickled LabelBinarizer")
    parser.add_argument("-d", "--dataset", required=True,
                        help="folder with one sub-folder of images per class")
    parser.add_argument("--output-prefix", default=None,
                        help="files are written as PREFIX.report.txt, PREFIX.metrics.json, "
                             "PREFIX.confusion.png, PREFIX.worst.png and the page "
                             "PREFIX.report.html; a folder (ending in /) gets report.txt, ... "
                             "inside (default: <model>.eval-<dataset folder name>)")
    parser.add_argument("--top-k", type=cli.positive_int, default=3,
                        help="also report top-k accuracy (default: %(default)s)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=32,
                        help="images per model call (default: %(default)s)")
    cli.add_input_flags(parser)
    parser.add_argument("--cache-dir", default=None,
                        help="folder for the decoded-image cache (default: $POKEDEX_CACHE_DIR "
                             "or MODEL.cache beside the model, shared with train.py)")
    args = parser.parse_args(argv)
    for flag, path in (("-m/--model", args.model), ("-l/--labelbin", args.labelbin)):
        if not os.path.isfile(path):
            parser.error(f"argument {flag}: file not found: {path}")
    if not os.path.isdir(args.dataset):
        parser.error(f"argument -d/--dataset: folder not found: {args.dataset}")
    prefix = args.output_prefix or default_prefix(args.model, args.dataset)
    for path in page_and_output_paths(prefix):  # before an hour of predictions, not after
        problem = cli.unwritable_reason(path)
        if problem:
            parser.error(f"argument --output-prefix: {problem}")
    return args


def page_path(prefix):
    """The evaluation page beside report.txt: PREFIX.report.html or FOLDER/report.html."""
    from pyimagesearch.evaluation import output_paths

    return output_paths(prefix)["report.txt"][:-len(".txt")] + ".html"


def page_and_output_paths(prefix):
    from pyimagesearch.evaluation import output_paths

    return list(output_paths(prefix).values()) + [page_path(prefix)]


def default_prefix(model_path, dataset_path):
    name = os.path.basename(os.path.normpath(os.path.abspath(dataset_path))) or "dataset"
    return f"{model_path}.eval-{name}"


def main(argv=None):
    args = parse_args(argv)
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
                                          channel_order=args.channel_order,
                                          input_scale=args.input_scale)
        print(f"[INFO] loading images from {args.dataset}...")
        images = dataset.load_image_folder(args.dataset, classifier.image_size,
                                           args.cache_dir or dataset.default_cache_dir(args.model))
    except (persistence.ArtifactError, dataset.DatasetError) as error:
        cli.fail("evaluate.py", str(error))
    if len(images.labels) == 0:
        cli.fail("evaluate.py", f"no readable images in {args.dataset}")
    # The folder's class indices -> the model's output columns, by name.
    to_model = np.array([classifier.class_names.index(name) for name in images.class_names])
    true_labels = to_model[images.labels]  # (N,)

    print(f"[INFO] classifying {len(true_labels)} images, {len(images.skipped)} file(s) skipped")
    probabilities = classifier.predict_arrays(images.images, args.batch_size)  # (N, C)
    prefix = args.output_prefix or default_prefix(args.model, args.dataset)
    try:
        metrics = evaluation.write_report(
            probabilities, true_labels, classifier.class_names, prefix,
            paths=[os.path.join(args.dataset, path) for path in images.paths], top_k=args.top_k,
            extra={"model": args.model, "dataset": args.dataset,
                   "skipped_files": images.skipped})
        write_page(args, classifier, images, true_labels, metrics, prefix, argv)
    except OSError as error:
        cli.fail("evaluate.py", f"cannot write the report: {error}", code=1)


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
