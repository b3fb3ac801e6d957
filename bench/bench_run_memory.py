"""Where a train.py run's memory peaks come from: RSS and peak RSS at each step of the run.

    python bench/bench_run_memory.py --dataset bench/data/shift/train --epochs 3

Runs the real train.py in this process (flags after the known ones go to it)
with the steps of pyimagesearch.training wrapped from outside, and prints, for
each step, the resident memory before and after it and the process's peak so
far (VmRSS / VmHWM from /proc/self/status), plus the same after every epoch.
The decoded-image cache goes to a fresh temporary folder, so the first step
decodes every image. Linux only.
"""

import argparse
import os
import runpy
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ROWS = []
STARTED = time.monotonic()


def memory():
    with open("/proc/self/status") as handle:
        status = {line.split(":")[0]: int(line.split()[1]) // 1024 for line in handle
                  if line.startswith(("VmRSS", "VmHWM"))}
    return status["VmRSS"], status["VmHWM"]


def mark(label):
    rss, peak = memory()
    ROWS.append((label, rss, peak, time.monotonic() - STARTED))
    print(f"[memory] {label}: RSS {rss} MiB, peak so far {peak} MiB", flush=True)


def wrap(module, name, label=None):
    function = getattr(module, name)

    def wrapped(*args, **kwargs):
        mark(f"before {label or name}")
        try:
            return function(*args, **kwargs)
        finally:
            mark(f"after {label or name}")

    setattr(module, name, wrapped)


def attach():
    from pyimagesearch import persistence, training

    for name in ("load_data", "prepare_run", "fit", "fit_confidence", "evaluate_test",
                 "save_outputs", "export_tflite", "run_page"):
        wrap(training, name)
    wrap(persistence, "save_model")
    import_tensorflow = training.import_tensorflow_quietly

    def import_and_watch_epochs():
        device = import_tensorflow()
        import keras

        class EpochMemory(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                mark(f"end of epoch {epoch + 1}")

        fit = keras.Model.fit

        def fit_with_memory(self, *args, callbacks=None, **kwargs):
            return fit(self, *args, callbacks=list(callbacks or []) + [EpochMemory()], **kwargs)

        keras.Model.fit = fit_with_memory
        mark("TensorFlow imported")
        return device

    training.import_tensorflow_quietly = import_and_watch_epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args, rest = parser.parse_known_args()
    folder = tempfile.mkdtemp(prefix="pokedex-run-memory-")
    attach()
    mark("start")
    sys.argv = [os.path.join(REPO, "train.py"), "--dataset", args.dataset,
                "--model", os.path.join(folder, "m.model"),
                "--labelbin", os.path.join(folder, "lb.pickle"),
                "--plot", os.path.join(folder, "plot.png"),
                "--cache-dir", os.path.join(folder, "cache"),
                "--epochs", str(args.epochs)] + rest
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as stop:
        if stop.code:
            raise
    print("\n| step | RSS (MiB) | peak so far (MiB) | seconds since start |\n"
          "| --- | --- | --- | --- |")
    for label, rss, peak, seconds in ROWS:
        print(f"| {label} | {rss} | {peak} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
