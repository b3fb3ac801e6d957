"""Write a folder dataset into TFRecord shards that workers on other machines can read.

    python prepare.py --dataset dataset --output shards
    python prepare.py --dataset dataset --output shards --image-size 96 --per-shard 1024

Run it again after the folder changed: only the shards whose images changed
are rewritten (pyimagesearch/shards.py explains the assignment).
"""

import os
import sys

from pyimagesearch import cli


def parse_args(argv=None):
    parser = cli.ArgumentParser(prog="prepare.py", description=__doc__.split("\n")[0])
    parser.add_argument("-d", "--dataset", required=True,
                        help="folder with one sub-folder of images per class")
    parser.add_argument("-o", "--output", required=True,
                        help="folder for the shards, shards.json and features.csv")
    parser.add_argument("--image-size", type=cli.image_size, default=96,
                        help="images are resized to this square size, as train.py does "
                             "(default: %(default)s)")
    parser.add_argument("--per-shard", type=cli.per_shard, default=1024,
                        help="images per shard file; give each worker at least one shard "
                             "(default: %(default)s)")
    parser.add_argument("--cache-dir", default=None,
                        help="decoded-image cache (default: $POKEDEX_CACHE_DIR, else "
                             "<output>.cache)")
    parser.add_argument("--rebuild", action="store_true",
                        help="cut every shard afresh instead of keeping the previous assignment")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dataset):
        parser.error(f"argument -d/--dataset: folder not found: {args.dataset}")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        parser.error(f"argument -o/--output: {args.output} is a file; give a folder")
    return args


def main(argv=None):
    args = parse_args(argv)
    from pyimagesearch import dataset

    try:  # before TensorFlow's slow start: the cache folder must be writable
        cache_dir = args.cache_dir or dataset.default_cache_dir(args.output)
        dataset.check_cache_writable(dataset.cache_path_for(cache_dir, args.dataset,
                                                            args.image_size))
    except dataset.DatasetError as error:
        cli.fail("prepare.py", str(error))
    cli.import_tensorflow_quietly()  # its C++ start-up lines would bury ours
    from pyimagesearch import shards

    try:
        summary = shards.prepare(args.dataset, args.output, image_size=args.image_size,
                                 per_shard=args.per_shard, cache_dir=args.cache_dir,
                                 rebuild=args.rebuild)
    except shards.dataset_lib.DatasetError as error:  # ShardError is one
        cli.fail("prepare.py", str(error))
    except OSError as error:  # full disk, permission denied
        where = f"{error.filename}: " if error.filename else ""
        cli.fail("prepare.py", f"{where}{error.strerror or error}", code=1)
    if summary.skipped:
        print(f"[WARNING] {len(summary.skipped)} unreadable file(s) left out (listed above)")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
