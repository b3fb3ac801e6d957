"""Check a dataset folder for duplicates, wrong labels, broken and odd files, and say what to do.

    python doctor.py --dataset dataset
    python doctor.py --dataset dataset --model pokedex.model --labelbin lb.pickle
    python doctor.py --dataset dataset --quarantine quarantine --move duplicate near-blank
    python doctor.py --undo quarantine
"""

import json
import os
import sys

from pyimagesearch import cli
from pyimagesearch.doctor import LOG_NAME, MOVABLE as KINDS  # no TensorFlow


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-d", "--dataset", help="folder with one sub-folder of images per class")
    parser.add_argument("-m", "--model", help="a model trained on it: also rank the images "
                                              "whose label the model most confidently disputes")
    parser.add_argument("-l", "--labelbin", help="the model's label file (with --model)")
    parser.add_argument("--image-size", type=cli.image_size, default=96,
                        help="size images are read at without --model (default: %(default)s)")
    parser.add_argument("--output-prefix", help="write PREFIX.json and PREFIX.html "
                                                "(default: <dataset>.doctor beside the folder)")
    parser.add_argument("--cache-dir", help="decoded-image cache (default: as train.py's)")
    parser.add_argument("--quarantine", metavar="DIR",
                        help="move the files of the --move kinds into DIR (never deletes; "
                             "DIR/quarantine-log.csv lists every move)")
    parser.add_argument("--move", nargs="+", choices=KINDS, default=[], metavar="KIND",
                        help=f"finding kinds to move with --quarantine: {', '.join(KINDS)}")
    parser.add_argument("--undo", metavar="DIR", help="move the files logged in DIR back")
    cli.add_input_flags(parser)
    args = parser.parse_args(argv)
    if args.undo:
        if not os.path.isfile(os.path.join(args.undo, "quarantine-log.csv")):
            parser.error(f"argument --undo: no quarantine-log.csv in {args.undo}")
        return args
    if not args.dataset:
        parser.error("the following arguments are required: -d/--dataset")
    if not os.path.isdir(args.dataset):
        parser.error(f"argument -d/--dataset: folder not found: {args.dataset}")
    if bool(args.model) != bool(args.labelbin):
        parser.error("--model and --labelbin go together")
    if bool(args.quarantine) != bool(args.move):
        parser.error("--quarantine DIR and --move KIND... go together")
    if "likely-mislabelled" in args.move and not args.model:
        parser.error("--move likely-mislabelled needs --model")
    for flag, path in (("-m/--model", args.model), ("-l/--labelbin", args.labelbin)):
        problem = path and cli.file_problem(path)
        if problem:
            parser.error(f"argument {flag}: {problem}")
    if args.quarantine:
        if _inside(args.quarantine, args.dataset):
            # Files "moved" there would stay in the dataset, and train again.
            parser.error(f"argument --quarantine: {args.quarantine} is inside the dataset "
                         f"{args.dataset} (links followed); give a folder outside it")
        problem = cli.unwritable_reason(os.path.join(args.quarantine, LOG_NAME))
        if problem:
            parser.error(f"argument --quarantine: {problem}")
    args.output_prefix = (args.output_prefix
                          or os.path.abspath(args.dataset).rstrip(os.sep) + ".doctor")
    problem = cli.unwritable_reason(args.output_prefix + ".json")
    if problem:
        parser.error(f"argument --output-prefix: {problem}")
    return args


def _inside(path, folder):
    """Whether `path` is `folder` or under it, once links are resolved (it may not exist yet)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def main(argv=None):
    args = parse_args(argv)
    from PIL import Image

    from pyimagesearch import dataset, doctor, report

    if args.undo:
        doctor.undo(args.undo)
        return 0
    classifier, image_size = None, args.image_size
    if args.model:
        from pyimagesearch import persistence
        from pyimagesearch.inference import Classifier

        try:
            classifier = Classifier(args.model, args.labelbin, channel_order=args.channel_order,
                                    input_scale=args.input_scale)
        except persistence.ArtifactError as error:  # not a model, a label file of another run
            cli.fail("doctor.py", str(error))
        image_size = classifier.image_size
    cache = args.cache_dir or dataset.default_cache_dir(args.model)
    try:
        folder = dataset.load_image_folder(args.dataset, image_size, cache)
    except dataset.DatasetError as error:
        cli.fail("doctor.py", str(error))
    probabilities = None
    if classifier is not None:
        unknown = sorted(set(folder.class_names) - set(classifier.class_names))
        if unknown:
            cli.fail("doctor.py", f"classes the model does not know: {', '.join(unknown)}")
        # The model's probabilities, re-ordered to the folder's classes.
        columns = [classifier.class_names.index(name) for name in folder.class_names]
        probabilities = classifier.predict_arrays(folder.images)[:, columns]
    findings = doctor.examine(folder, image_size, probabilities)
    shown = printable(findings)  # the paths stay as they are on disk for the moves
    print_report(shown)
    prefix = args.output_prefix
    read = dataset.row_reader(folder.images)
    listed = {path for finding in findings["findings"] for path in finding["files"][:60]}
    rows = {path: row for row, path in enumerate(folder.paths) if path in listed}
    thumbnails = {cli.printable(path): report.data_uri(report.png_bytes(
        Image.fromarray(read([row])[0]))) for path, row in rows.items()}
    try:
        os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
        with open(prefix + ".json", "w", encoding="utf-8") as handle:
            json.dump(shown, handle, indent=1)
        with open(prefix + ".html", "w", encoding="utf-8") as handle:
            handle.write(report.render(dict(shown, thumbnails=thumbnails), "doctor.html.j2"))
    except OSError as error:  # the disk filled up, or the folder changed since the check
        cli.fail("doctor.py", f"cannot write {prefix}.json/.html: {error.strerror or error}",
                 code=1)
    print(f"[INFO] wrote {cli.printable(prefix)}.json and {cli.printable(prefix)}.html")
    if args.quarantine:
        paths = doctor.files_to_move(findings, set(args.move))
        try:
            doctor.quarantine(args.dataset, paths, args.quarantine, reason=" ".join(args.move))
        except OSError as error:  # each move done so far is in the log, for --undo
            where = f"{cli.printable(error.filename)}: " if error.filename else ""
            cli.fail("doctor.py", f"--quarantine: {where}{error.strerror or error} (the moves "
                                  f"done are logged; undo: doctor.py --undo {args.quarantine})",
                     code=1)
    return 0


def printable(value):
    """`value` (the findings) with every string a printable file name: cli.printable."""
    if isinstance(value, str):
        return cli.printable(value)
    if isinstance(value, dict):
        return {key: printable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(item) for item in value]
    return value


def print_report(findings):
    print(f"{findings['images']} readable images, {len(findings['classes'])} classes: " +
          ", ".join(f"{name} {count}" for name, count in findings["classes"].items()))
    if not findings["findings"]:
        print("nothing to report")
    for finding in findings["findings"]:
        detail = finding["detail"]
        summary = detail if isinstance(detail, str) else f"{len(detail)} file(s)"
        print(f"\n{finding['kind']}: {summary}")
        for line in ([] if isinstance(detail, str) else detail[:10]):
            print(f"  {line}")
        if isinstance(detail, str) and finding["files"]:
            print("  " + ", ".join(finding["files"][:6]) + (" ..." if len(finding["files"]) > 6
                                                           else ""))
        print(f"  -> {finding['advice']}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
