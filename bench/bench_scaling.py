"""Scaling benchmark for train.py --workers: images/s of SmallerVGGNet training, one run.

    .venv/bin/python bench/bench_scaling.py                # 96 px, batch 32
    .venv/bin/python bench/bench_scaling.py --image-size 64 --steps 20

Three configurations, each in fresh processes, one after the other:
  tf-1     one process on TensorFlow: what train.py does without --workers
  jax-1    one process on JAX (KERAS_BACKEND=jax), no distribution
  jax-2    two processes on JAX, keras.distribution.DataParallel over loopback
           (gloo), batch/2 per process: what train.py --workers 2 runs
Every configuration trains the same network with model.fit on random
in-memory images at the same global batch, steps_per_epoch=--steps, for
--epochs epochs; the first epoch (compiling) is left out and the best later
epoch is kept (the machine is shared). images/s = global images / seconds.
It measures the engine and its collectives, not the input pipeline (see
bench_train.py for that). Results go to bench/results/scaling-<time>/summary.json.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
CONFIGS = {"tf-1": ("tensorflow", 1), "jax-1": ("jax", 1), "jax-2": ("jax", 2)}


def child(args):
    """One process of a configuration: print a JSON line of per-epoch images/s (process 0)."""
    import numpy as np

    processes = int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1"))
    if processes > 1:
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    sys.path.insert(0, REPO)
    from pyimagesearch.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    from pyimagesearch.smallervggnet import SmallerVGGNet

    index = 0
    if processes > 1:
        keras.distribution.initialize()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(auto_shard_dataset=False))
        index = int(os.environ["KERAS_DISTRIBUTION_PROCESS_ID"])
    keras.utils.set_random_seed(42)
    size, batch = args.image_size, args.batch_size // processes
    model = SmallerVGGNet.build(size, size, 3, args.classes, rescale=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(index)
    images = rng.integers(0, 256, (batch * 4, size, size, 3)).astype(np.float32)
    labels = keras.utils.to_categorical(rng.integers(0, args.classes, batch * 4), args.classes)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(
        batch, drop_remainder=True).prefetch(2)
    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(data, steps_per_epoch=args.steps, epochs=args.epochs, callbacks=[Timer()],
              verbose=0)
    if index == 0:
        print("RESULT " + json.dumps({"images_per_second": [
            args.steps * args.batch_size / s for s in seconds]}), flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_config(name, args):
    backend, processes = CONFIGS[name]
    address = f"127.0.0.1:{free_port()}"
    command = [sys.executable, __file__, "--child", "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--epochs", str(args.epochs), "--classes", str(args.classes)]
    children = []
    started = time.time()
    for index in range(processes):
        environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        if processes > 1:
            environment.update(KERAS_DISTRIBUTION_JOB_ADDRESSES=address,
                               KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes),
                               KERAS_DISTRIBUTION_PROCESS_ID=str(index))
        children.append(subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True))
    outputs = [child.communicate(timeout=args.timeout)[0] for child in children]
    rates = [json.loads(line[len("RESULT "):])["images_per_second"]
             for line in outputs[0].splitlines() if line.startswith("RESULT ")]
    if not rates or any(child.returncode for child in children):
        raise SystemExit(f"{name}: failed (exit codes {[c.returncode for c in children]})")
    rates = rates[0]
    return {"backend": backend, "processes": processes, "images_per_second": rates,
            "best_after_first": max(rates[1:] or rates), "wall_seconds": time.time() - started}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch")
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="the first one is left out")
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per configuration")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    results = {}
    for name in args.configs.split(","):
        results[name] = run_config(name, args)
        print(f"{name:6} {results[name]['best_after_first']:7.1f} images/s "
              f"(epochs: {[round(r, 1) for r in results[name]['images_per_second']]})",
              flush=True)
    base = results.get("tf-1", next(iter(results.values())))["best_after_first"]
    for name, result in results.items():
        result["ratio_to_tf_1"] = round(result["best_after_first"] / base, 3)
        print(f"{name:6} x{result['ratio_to_tf_1']:.2f} of tf-1")
    folder = os.path.join(BENCH, "results", time.strftime("scaling-%Y%m%d-%H%M%S"))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "summary.json"), "w") as handle:
        json.dump({"settings": vars(args), "cpus": os.cpu_count(), "results": results},
                  handle, indent=1)
    print(f"summary: {folder}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
