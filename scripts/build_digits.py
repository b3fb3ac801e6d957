"""Write scikit-learn's 1,797 handwritten digits as a folder-per-class dataset.

    <output>/0/00000.png ... <output>/9/01796.png

Source: `sklearn.datasets.load_digits`, 8x8 images with values 0-16 that ship inside
scikit-learn, so this works offline. Each image is scaled to 0-255 and enlarged to
--size (default 28, MNIST's size) with bilinear interpolation: unlike Lanczos or
bicubic it never overshoots, so no ringing halo around the strokes. Grey PNG, light
digits on black like MNIST. The file name is the digit's index in load_digits, and
the same scikit-learn gives byte-identical files.

    python scripts/build_digits.py --output digits
    python train.py --dataset digits --model digits.model --labelbin digits.pickle \
        --arch cnn --image-size 28 --channels 1
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the repository root
from pyimagesearch import cli  # noqa: E402
from _folders import check_output, describe_counts, fail, prepare_output, write_class_folders

CLASS_NAMES = [str(digit) for digit in range(10)]  # one character each: they sort as numbers
MAX_VALUE = 16  # load_digits counts set pixels in 4x4 blocks of a 32x32 bitmap


def enlarge(digits: np.ndarray, size: int) -> np.ndarray:
    """(N, 8, 8) values 0-16 -> (N, size, size) uint8 0-255."""
    grey = np.rint(digits * (255 / MAX_VALUE)).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(image).resize(
        (size, size), Image.Resampling.BILINEAR)) for image in grey])


def main() -> None:
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, required=True,
                        help="dataset folder to create, one sub-folder per digit")
    parser.add_argument("--size", type=cli.positive_int, default=28,
                        help="side of the written images in pixels (default: 28)")
    parser.add_argument("--force", action="store_true",
                        help="replace the digit folders in a non-empty --output")
    args = parser.parse_args()

    check_output(args.output, args.force)

    from sklearn.datasets import load_digits  # after the checks: the import takes a second

    digits = load_digits()
    prepare_output(args.output, CLASS_NAMES)
    try:
        counts = write_class_folders(enlarge(digits.images, args.size), digits.target,
                                     CLASS_NAMES, args.output)
    except OSError as error:
        fail(f"could not write to {args.output} ({error})")
    print(f"wrote {describe_counts(counts)} ({args.size}x{args.size} grey PNG) "
          f"to {args.output}/0 ... {args.output}/9")


if __name__ == "__main__":
    main()
