"""What train.py and classify.py share: one-line errors and exit codes."""

import argparse
import codecs
import contextlib
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

USAGE_ERROR = 2  # argparse's own code for a bad argument
INTERRUPTED = 130  # the shell's code for Ctrl-C


class ArgumentParser(argparse.ArgumentParser):
    """argparse, printing its error as one line: `prog: error: ...` and exit 2."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _number_type(name, convert, accept, requirement, example):
    """An argparse `type=` that explains the valid form: 'must be positive, e.g. 8 (got 0)'."""
    kind = "whole number" if convert is int else "number"

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {kind}, e.g. {example} (got {text!r})") from None
        if convert is float and not math.isfinite(value):  # inf passes "v > 0"
            raise argparse.ArgumentTypeError(f"must be a finite number, e.g. {example} "
                                             f"(got {text!r})")
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, e.g. {example} (got {value})")
        return value

    parse.__name__ = name
    return parse


def _int_range(name, low, high, example):
    """A whole number from `low` to `high`, both included."""
    return _number_type(name, int, lambda v: low <= v <= high, f"{low} to {high}", example)


# Upper bounds, checked when the flags are parsed, before any image is read. Each is far
# above any sensible use and far below what exhausts memory or overflows int64:
# - an image of 1024 x 1024 is 3 MB decoded (12 MB as float32 in a batch), so the decoded
#   cache holds ~3 GB per 1,000 images; the networks here train at 28 to 300 px. At
#   100,000 px one image would be 30 GB (review 23, item 13).
MAX_IMAGE_SIZE = 1024
# - 4,096 images of 224 px are 2.4 GB as float32, before the network's activations.
MAX_BATCH_SIZE = 4096
MAX_EPOCHS = 100_000
MAX_TOP_K = 1000  # more than the model's classes lists them all
MAX_LEARNING_RATE = 1.0  # Adam diverges well below it
MAX_CHECKPOINT_SECONDS = 86_400  # a day: a hard kill loses at most this much work
MAX_PER_SHARD = 100_000  # one shard file; 100,000 images of 96 px are 2.8 GB
MAX_PROCESSES = 1024

positive_int = _number_type("positive_int", int, lambda v: v > 0, "positive", 8)
non_negative_int = _number_type("non_negative_int", int, lambda v: v >= 0, "0 or more", 5)
# The smallest size that works is per network: architecture.py.
image_size = _int_range("image_size", 1, MAX_IMAGE_SIZE, 96)
batch_size = _int_range("batch_size", 1, MAX_BATCH_SIZE, 32)
epochs = _int_range("epochs", 1, MAX_EPOCHS, 100)
epochs_or_zero = _int_range("epochs_or_zero", 0, MAX_EPOCHS, 5)
top_k = _int_range("top_k", 1, MAX_TOP_K, 3)
per_shard = _int_range("per_shard", 1, MAX_PER_SHARD, 1024)
process_count = _int_range("process_count", 1, MAX_PROCESSES, 2)
process_id = _int_range("process_id", 0, MAX_PROCESSES - 1, 0)
learning_rate = _number_type("learning_rate", float, lambda v: 0 < v <= MAX_LEARNING_RATE,
                             f"above 0 and at most {MAX_LEARNING_RATE:g}", 1e-3)
checkpoint_seconds = _number_type("checkpoint_seconds", float,
                                  lambda v: 0 <= v <= MAX_CHECKPOINT_SECONDS,
                                  f"0 to {MAX_CHECKPOINT_SECONDS} (a day)", 120)
positive_float = _number_type("positive_float", float, lambda v: v > 0, "positive", 1e-3)
non_negative_float = _number_type("non_negative_float", float, lambda v: v >= 0,
                                  "0 or more", 120)
fraction = _number_type("fraction", float, lambda v: 0 < v < 1,
                        "between 0 and 1 exclusive", 0.2)
fraction_or_zero = _number_type("fraction_or_zero", float, lambda v: 0 <= v < 1,
                                "0 or more and below 1", 0.15)
probability = _number_type("probability", float, lambda v: 0 <= v <= 1, "between 0 and 1", 0.6)
MAX_SEED = 2**32 - 1  # numpy's and keras.utils.set_random_seed's largest
seed = _int_range("seed", 0, MAX_SEED, 42)


class LazyChoices:
    """argparse `choices` computed on first use: the network names import Keras, which
    only a given --arch or --help needs (usage errors stay fast and TensorFlow-free)."""

    def __init__(self, load):
        self._load, self._values = load, None

    def _get(self):
        if self._values is None:
            self._values = list(self._load())
        return self._values

    def __contains__(self, value):
        return value in self._get()

    def __iter__(self):
        return iter(self._get())


def add_input_flags(group):
    """--channel-order and --input-scale, the same in classify.py and evaluate.py."""
    group.add_argument("--channel-order", choices=("auto", "rgb", "bgr"), default="auto",
                       help="the channel order the model was trained on; 'auto' reads the "
                            "model's description, or assumes the tutorial's BGR (cv2.imread) "
                            "for a model without one (default: %(default)s)")
    group.add_argument("--input-scale", choices=("auto", "1", "1/255"), default="auto",
                       help="multiply pixels 0-255 by this before the model: '1' for models "
                            "that rescale inside (train.py's), '1/255' for the tutorial's; "
                            "'auto' reads the model's description, else 1/255 unless the model "
                            "starts with a Rescaling layer (default: %(default)s)")


@contextlib.contextmanager
def quiet_stderr():
    """Point file descriptor 2 at /dev/null for a while (C++ libraries' chatter).

    TensorFlow 2.21 and LiteRT print oneDNN / CUDA-stub / cuInit / XNNPACK
    lines to stderr from C++ (absl), before TF_CPP_MIN_LOG_LEVEL applies; they
    bury our one-line messages. Python exceptions still surface afterwards.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly():
    """Import TensorFlow without its start-up chatter; describe the devices it will use."""
    with quiet_stderr():
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    return f"{len(gpus)} GPU(s)" if gpus else "CPU only"


def available_cpus():
    """CPUs this process may use (respects taskset/cgroups affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def unwritable_reason(path):
    """Why a file cannot be created at `path` (one line naming the folder), or None.

    The folder may not exist yet (writers create it): its nearest existing
    parent must be a folder we can write in. Tried for real with a temporary
    file, because root passes every permission check yet not a read-only mount.
    """
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        return f"cannot write {path}: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write {path}: no permission to write in {folder}"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return f"cannot write {path}: {folder}: {error.strerror}"
    return None


def file_problem(path):
    """Why `path` is not a file to read, in words ('file not found: X', 'X is a folder, not a
    file', 'X is not a regular file ...'), or None. A FIFO would block the reader forever."""
    if os.path.isdir(path):
        return f"{path} is a folder, not a file"
    if not os.path.exists(path):
        return f"file not found: {path}"
    if not os.path.isfile(path):
        return f"{path} is not a regular file (a pipe, socket or device); give a file"
    return None


def _escape_file_name_bytes(error):
    """Codec error handler: the bytes of a file name that were not UTF-8 (os.fsdecode keeps
    each as a lone surrogate, U+DC80 to U+DCFF) as '\\xff'; anything else that the codec
    cannot take as a backslash escape too."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
                   else c.encode("ascii", "backslashreplace").decode("ascii")
                   for c in text), error.end


FILE_NAME_ERRORS = "pokedex-file-name"
codecs.register_error(FILE_NAME_ERRORS, _escape_file_name_bytes)


def printable(name):
    """A file name (or a message holding one) as text every page, report and console takes.

    A name that is not UTF-8 reaches Python with its odd bytes as lone surrogates;
    writing those to a UTF-8 file or a strict stdout raises UnicodeEncodeError. They
    are shown as escapes instead: b'notes\\xff.txt' reads 'notes\\xff.txt'. A name
    that is valid UTF-8 comes back unchanged.
    """
    return os.fsdecode(name).encode("utf-8", FILE_NAME_ERRORS).decode("utf-8")


def fail(prog, message, code=USAGE_ERROR):
    """Print `prog: error: message` on one line and exit with `code`."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


def run(main):
    """Run a script's main(): Ctrl-C exits 130 and a closed pipe (`| head`) exits quietly.

    A file name that is not UTF-8 never stops a command: where stdout is strict UTF-8
    (a UTF-8 locale, PYTHONIOENCODING=utf-8:strict) its odd bytes print as escapes.
    """
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors=FILE_NAME_ERRORS)
    try:
        return main()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # Python would print a traceback when flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
