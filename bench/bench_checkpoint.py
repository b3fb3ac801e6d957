"""Bytes written and seconds per epoch: checkpoints before and after, same data, same run.

    python bench/bench_checkpoint.py                       # bundled dataset/, 20 epochs
    python bench/bench_checkpoint.py --epochs 10 --baseline-ref a99b9ac

"before" is train.py as it was at --baseline-ref (a git worktree of that commit;
default: the last commit before checkpoints were made lighter, which saved the
model with Adam's state after every epoch, with fsync). "after" is the working
tree's train.py with its defaults, and "after, every epoch" the same with
--checkpoint-every 0. Each runs once with --epochs 1 to fill its own
decoded-image cache (not measured), then measured in a fresh process:

  bytes written   wchar from /proc/self/io at exit: every byte the process wrote
                  (checkpoints, the final model, its LiteRT copy, plots, reports)
  s/epoch         median gap between consecutive "Epoch k/N" lines of Keras's
                  log: training, validation, precise BN and checkpointing
  kernel CPU      system CPU time as a share of the process's CPU time
  model file      size of the shipped model

The machine is shared: compare the ratios within one run.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE_REF = "a99b9ac"  # per-epoch 104 MB checkpoints, model saved with optimizer state

# Runs train.py and prints the process's I/O counters when it exits, and the bytes of
# every file that the run folder's save() created (both versions have RunFolder.save).
LAUNCHER = """
import atexit, os, runpy, sys
from pyimagesearch import checkpoints
written = [0, 0]  # bytes, saves
original = checkpoints.RunFolder.save
def save(self, *args, **kwargs):
    before = {name: os.stat(os.path.join(self.path, name)).st_ino
              for name in (os.listdir(self.path) if os.path.isdir(self.path) else [])}
    result = original(self, *args, **kwargs)
    written[1] += 1
    for name in os.listdir(self.path):
        path = os.path.join(self.path, name)
        if before.get(name) != os.stat(path).st_ino:  # a file this save wrote
            written[0] += os.path.getsize(path)
    return result
checkpoints.RunFolder.save = save
def report():
    with open('/proc/self/io') as handle:
        sys.stderr.write('BENCH_IO ' + ' '.join(handle.read().split()) + '\\n')
    sys.stderr.write(f'BENCH_CHECKPOINT_BYTES {written[0]} {written[1]}\\n')
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def run_train(code_dir, dataset, out_dir, epochs, extra=()):
    """Run train.py from `code_dir`; return the measured figures."""
    model = os.path.join(out_dir, "m.model")
    command = [sys.executable, "-c", LAUNCHER, os.path.join(code_dir, "train.py"),
               "--dataset", dataset, "--model", model, "--labelbin",
               os.path.join(out_dir, "lb.pickle"), "--plot", os.path.join(out_dir, "plot.png"),
               "--cache-dir", os.path.join(out_dir, "cache"), "--epochs", str(epochs), *extra]
    environment = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
                       PYTHONPATH=code_dir)
    started = time.time()
    child = subprocess.Popen(command, cwd=code_dir, env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    epoch_times, io, log, split, checkpoint_bytes, checkpoints = [], {}, [], "?", 0, 0
    for line in child.stdout:
        log.append(line)
        if re.match(r"^Epoch \d+/\d+", line):
            epoch_times.append(time.time())
        sizes = re.match(r"^\[INFO\] (\d+) training, (\d+) validation", line)
        if sizes:
            split = f"{sizes[1]}/{sizes[2]}"
        if line.startswith("BENCH_CHECKPOINT_BYTES "):
            checkpoint_bytes, checkpoints = map(int, line.split()[1:3])
        if line.startswith("BENCH_IO "):
            fields = line.split()[1:]
            io = {key.rstrip(":"): int(value) for key, value in zip(fields[::2], fields[1::2])}
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.time() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"train.py in {code_dir} failed ({code}):\n" + "".join(log[-30:]))
    gaps = [b - a for a, b in zip(epoch_times, epoch_times[1:])]
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_seconds": wall, "epochs": epochs, "bytes_written": io.get("wchar", 0),
            "checkpoint_bytes": checkpoint_bytes, "checkpoints": checkpoints,
            "seconds_per_epoch": statistics.median(gaps) if gaps else None,
            "kernel_cpu_share": usage.ru_stime / cpu if cpu else 0.0,
            "model_bytes": os.path.getsize(model), "train_val_images": split}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=os.path.join(REPO, "dataset"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    dataset = os.path.abspath(args.dataset)
    work = tempfile.mkdtemp(prefix="bench-checkpoint-")
    baseline = os.path.join(work, "baseline")
    subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", "--quiet", baseline,
                    args.baseline_ref], check=True)
    configs = [("before", baseline, ()), ("after", REPO, ()),
               ("after, every epoch", REPO, ("--checkpoint-every", "0"))]
    results = {}
    try:
        for name, code_dir, extra in configs:
            out_dir = os.path.join(work, name.replace(",", "").replace(" ", "-"))
            os.makedirs(out_dir)
            print(f"[{name}] warming the cache (1 epoch)...", flush=True)
            run_train(code_dir, dataset, out_dir, 1, extra)
            print(f"[{name}] {args.epochs} epochs...", flush=True)
            results[name] = run_train(code_dir, dataset, out_dir, args.epochs, extra)
            print(f"[{name}] {json.dumps(results[name])}", flush=True)
    finally:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", baseline])
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    base = results["before"]
    print(f"\n{args.epochs} epochs on {dataset}, baseline {args.baseline_ref}\n")
    print(f"{'':20} {'checkpoints':>11} {'checkpoint MB/epoch':>19} {'fewer':>7} "
          f"{'all MB/epoch':>12} {'fewer':>7} "
          f"{'s/epoch':>8} {'kernel CPU':>10} {'model MB':>9} {'train/val':>9}")
    for name, result in results.items():
        epochs = result["epochs"]
        checkpoint = result["checkpoint_bytes"] / epochs / 1e6
        fewer_checkpoint = (f"{base['checkpoint_bytes'] / result['checkpoint_bytes']:6.1f}x"
                            if result["checkpoint_bytes"] else "-")
        total = result["bytes_written"] / epochs / 1e6
        fewer_total = base["bytes_written"] / max(1, result["bytes_written"])
        print(f"{name:20} {result['checkpoints']:11d} {checkpoint:19.1f} {fewer_checkpoint:>7} "
              f"{total:12.1f} "
              f"{fewer_total:6.1f}x {result['seconds_per_epoch']:8.2f} "
              f"{result['kernel_cpu_share']:10.1%} {result['model_bytes'] / 1e6:9.1f} "
              f"{result['train_val_images']:>9}")
    print("\ncheckpoint MB: files the run folder's save() wrote; all MB: every byte the process "
          "wrote (the final model,\nits LiteRT copy and the SavedModel the export goes through "
          "included). 'fewer': the baseline's bytes / these.\nThe split differs: 'before' splits "
          "frames at random, 'after' by group; compare s/epoch of 'after' with\n'after, every "
          "epoch' (same code, same split) for the time checkpointing costs.")

if __name__ == "__main__":
    main()
