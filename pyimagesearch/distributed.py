"""train.py --workers N: data-parallel training over N processes (Keras 3 on JAX).

The parent (train.py, TensorFlow backend as ever) loads the data, makes or
resumes the run, writes it to the run folder (epoch 0 on a fresh run) and then,
instead of model.fit, starts N workers:

    python -m pyimagesearch.distributed SETTINGS.json

each with KERAS_BACKEND=jax and KERAS_DISTRIBUTION_JOB_ADDRESSES /
_NUM_PROCESSES / _PROCESS_ID, so keras.distribution.initialize() joins them
(CPU collectives through gloo) and keras.distribution.DataParallel keeps one
replica of the weights per process, averaging gradients every step. A worker
runs training.fit exactly as one process would (same run folder, same
callbacks) except that (Worker below):

  - it reads rows[k::N] of the training rows, batch_size / N per step, endless,
    ceil(train / batch_size) steps per epoch on every process: the global batch
    and the steps are one process's;
  - every worker evaluates all validation rows (batch_size / N per step), so the
    global validation batch holds each row N times and val_loss is the mean over
    the validation rows, the same on every process: the best epoch, patience
    and the plateau rule decide alike everywhere;
  - only process 0 writes the checkpoint (and --keep-epochs files) and logs.

When the workers are done the parent reloads the run folder and goes on as a
single run does (confidence head, test report, LiteRT copy from TensorFlow,
run page). A worker that exits or is killed makes the parent stop the others
(SIGTERM, then SIGKILL) and exit 1 with one line; the same command resumes.
A parent that is killed takes its workers with it (die_with_parent), and its
settings file is removed by the next run (remove_orphaned_settings).
"""

import contextlib
import functools
import glob
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

DIVERGED = 3  # a worker's exit code when the loss became NaN/inf
STOP_SECONDS = 5.0  # SIGTERM, then SIGKILL after this long
# Native log lines of JAX/XLA/gloo/TensorFlow in a worker's output, not forwarded.
NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |\[Gloo\]|WARNING: All log messages before absl|"
                        r"E0000 |I0000 |W0000 |\s+@\s+0x|\*\*\* Check failure)")
EPOCH_LINE = re.compile(r"^Epoch (\d+)/")
# What one worker holds: the issue measured 0.9-1.4 GB each (JAX, TensorFlow, the
# decoded images); the parent keeps as much again.
WORKER_MEMORY = 1.5 * 2**30
PARENT_VARIABLE = "POKEDEX_WORKERS_PARENT"  # the parent's pid, for die_with_parent
SETTINGS_NAME = re.compile(r"^pokedex-workers-(\d+)-[^/]*\.json$")  # the pid that wrote it


class WorkerDied(RuntimeError):
    """A worker of train.py --workers N exited early; the others were stopped."""


class WorkersInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM in the parent; the workers were stopped."""


# --- the parent ------------------------------------------------------------------------------

def check_settings(settings):
    """One-line ValueError for settings the workers cannot run."""
    count = settings["workers"]
    if settings["batch_size"] % count:
        raise ValueError(f"--batch-size {settings['batch_size']} must be divisible by "
                         f"--workers {count} (each process takes an equal share of a batch), "
                         f"e.g. --batch-size {max(count, settings['batch_size'] // count * count)}")
    if settings.get("tensorboard"):
        raise ValueError("--tensorboard is not available with --workers yet; leave one out")
    if str(settings.get("arch") or "").startswith("efficientnet-lite"):
        raise ValueError(f"--workers is not for --arch {settings['arch']}: its head trains on "
                         "cached features in one process in seconds; leave --workers out")
    if not settings.get("coordinator"):  # with --coordinator, one worker per machine
        allowed, why = allowed_workers()
        if count > allowed:
            raise ValueError(f"--workers {count}: this machine can run at most {allowed} "
                             f"worker processes ({why}); give --workers {allowed} or fewer")


def allowed_workers():
    """(how many workers this machine holds, why): one per CPU we may run on, and
    WORKER_MEMORY each within the memory available, after the parent's share."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    memory = available_memory()
    if memory is None:
        return cpus, f"{cpus} CPUs"
    by_memory = int(memory // WORKER_MEMORY) - 1
    return max(1, min(cpus, by_memory)), (
        f"{cpus} CPUs, {memory / 2**30:.1f} GB of memory available at about "
        f"{WORKER_MEMORY / 2**30:.1f} GB a process, the parent's included")


def available_memory():
    """Bytes of memory available now (Linux: MemAvailable, within a cgroup's limit), or None."""
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    with contextlib.suppress(OSError, ValueError):  # cgroup v2: a container's own limit
        with open("/sys/fs/cgroup/memory.max") as limit, \
                open("/sys/fs/cgroup/memory.current") as current:
            available = min(available, int(limit.read()) - int(current.read()))
    return available


def fit_in_workers(run, data, settings, log):
    """training.fit for --workers N: the workers train; then load what they left."""
    from pyimagesearch import callbacks, training

    state = run.state
    patience_over = bool(settings["patience"]) and state["wait"] >= settings["patience"]
    if state["epoch"] >= settings["epochs"] or (
            patience_over and state.get("phase", 1) == len(training.architecture.phases(
                settings, state))):
        run.checkpoint = callbacks.EpochCheckpoint(run.folder, state, settings["patience"])
        log(f"[INFO] the checkpoint already holds the last epoch ({state['epoch']}); "
            "writing the outputs from its best epoch")
        return
    if state["epoch"] == 0:  # the workers start from this model, as a resumed run
        run.model.optimizer.build(run.model.trainable_variables)  # its slots saved too
        run.folder.save(run.model, state)
    try:
        run_workers(settings, log, ranks=[settings["process_id"]] if settings.get(
            "coordinator") else None)
    except KeyboardInterrupt:
        run.state = run.folder.load_state() or run.state  # for the message: epochs done
        raise
    run.state = run.folder.load_state()
    run.model = run.folder.load_model(run.state)
    run.checkpoint = callbacks.EpochCheckpoint(run.folder, run.state, settings["patience"])
    training.check_diverged(run, settings)


def run_other_machine(settings):
    """train.py --process-id K (K > 0): this machine's worker alone; process 0's machine
    prepares the run folder (which all must share, as the dataset) and writes the outputs."""
    from pyimagesearch import architecture

    architecture.resolve(settings)
    run_workers(settings, print, ranks=[settings["process_id"]])
    print(f"[INFO] worker {settings['process_id']} of {settings['num_processes']} done; "
          "process 0 writes the outputs")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_workers(settings, log, ranks=None):
    """Start the workers (all N locally, or `ranks` of a multi-machine job) and wait.

    Raises WorkerDied when one ends badly, WorkersInterrupted on Ctrl-C/SIGTERM.
    """
    count = settings.get("num_processes") or settings["workers"]
    address = settings.get("coordinator") or f"127.0.0.1:{free_port()}"
    ranks = list(range(count)) if ranks is None else ranks
    remove_orphaned_settings()
    handle, settings_path = tempfile.mkstemp(prefix=f"pokedex-workers-{os.getpid()}-",
                                             suffix=".json")
    with os.fdopen(handle, "w") as file:
        json.dump(settings, file)
    workers, readers, progress = [], [], {"epoch": 0}
    try:
        for rank in ranks:
            environment = dict(os.environ, KERAS_BACKEND="jax",
                               KERAS_DISTRIBUTION_JOB_ADDRESSES=address,
                               KERAS_DISTRIBUTION_NUM_PROCESSES=str(count),
                               KERAS_DISTRIBUTION_PROCESS_ID=str(rank),
                               PYTHONUNBUFFERED="1", **{PARENT_VARIABLE: str(os.getpid())},
                               PYTHONPATH=os.pathsep.join(
                                   [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    os.environ.get("PYTHONPATH", "")]))
            # Their own session: a terminal's Ctrl-C reaches the parent alone, which
            # then stops every worker (not a collective half-left by one of them).
            # Started from the main thread: die_with_parent's signal follows the thread.
            worker = subprocess.Popen(
                [sys.executable, "-m", "pyimagesearch.distributed", settings_path],
                env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True)
            workers.append(worker)
            readers.append(_forward(worker, rank == min(ranks), progress))
        _wait(workers, ranks, count, progress)
    except KeyboardInterrupt:
        _stop(workers)
        raise WorkersInterrupted from None
    finally:
        _stop(workers)
        for worker in workers:
            worker.stdout.close()
        for reader in readers:
            reader.join(timeout=STOP_SECONDS)
        os.remove(settings_path)


def remove_orphaned_settings(folder=None):
    """Remove the settings files (pokedex-workers-PID-*.json) of parents no longer running:
    a SIGKILLed train.py cannot remove its own."""
    for path in glob.glob(os.path.join(folder or tempfile.gettempdir(), "pokedex-workers-*")):
        match = SETTINGS_NAME.match(os.path.basename(path))
        if match and not _running(int(match.group(1))):
            with contextlib.suppress(OSError):  # another user's, or removed meanwhile
                os.remove(path)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _forward(worker, show, progress):
    """Copy a worker's Python output to ours (the first one's; the others' last lines are
    kept for when it fails) and follow Keras's 'Epoch k/n' lines."""
    tail = worker.tail = []

    def copy():
        for raw in iter(worker.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            match = EPOCH_LINE.match(line)
            if match:
                progress["epoch"] = int(match.group(1))
            if NATIVE_LOG.match(line):
                continue
            if show:
                print(line, flush=True)
            else:
                tail[:] = (tail + [line])[-20:]

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def _wait(workers, ranks, count, progress):
    while True:
        codes = [worker.poll() for worker in workers]
        for rank, worker, code in zip(ranks, workers, codes):
            if code not in (None, 0):
                _stop(workers)
                if code == DIVERGED:
                    from pyimagesearch.training import TrainingDiverged
                    raise TrainingDiverged("the loss became NaN or infinite (see above); try "
                                           "--restart with a lower --lr. The run folder keeps "
                                           "the last good checkpoint")
                for line in getattr(worker, "tail", []):
                    print(f"[worker {rank}] {line}", file=sys.stderr)
                raise WorkerDied(f"worker {rank} of {count} died (exit code {code}) in epoch "
                                 f"{max(progress['epoch'], 1)}; stopped the others; run the "
                                 "same command again to resume")
        if all(code == 0 for code in codes):
            return
        time.sleep(0.2)


def _stop(workers):
    """SIGTERM every worker still running, SIGKILL after STOP_SECONDS; never hangs."""
    running = [worker for worker in workers if worker.poll() is None]
    for worker in running:
        with contextlib.suppress(ProcessLookupError):
            worker.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for worker in running:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=STOP_SECONDS)


# --- a worker --------------------------------------------------------------------------------

class Worker:
    """This process's place among N: its share of the data and what it writes (training.fit)."""

    def __init__(self, index, count, settings):
        self.index, self.count, self.settings = index, count, settings
        self.batch_size = settings["batch_size"] // count  # per process; N of them make a step

    def datasets(self, data, split, class_weights):
        from pyimagesearch import pipeline
        from pyimagesearch.training import setting

        settings, images = self.settings, data.folder.images
        classes = len(data.class_names)
        rows = np.asarray(split.train)[self.index::self.count]
        train = pipeline.make_dataset(images, data.labels, rows, classes, self.batch_size, True,
                                      # the same seed: the augmenters' seed variables
                                      # must be equal on every process
                                      settings["seed"], settings["augmenter"],
                                      color=setting(settings, "color_augment"),
                                      class_weights=class_weights, repeat=True)
        val = pipeline.make_dataset(images, data.labels, split.val, classes, self.batch_size,
                                    False, settings["seed"])
        self.rows = rows
        return train, val

    def fit_options(self, split):
        steps = math.ceil(len(split.train) / self.settings["batch_size"])  # one process's
        return {"steps_per_epoch": steps, "verbose": 2 if self.index == 0 else 0}

    def callbacks(self, extra):
        extra = list(extra) if self.index == 0 else []  # --keep-epochs files: process 0
        if os.environ.get("POKEDEX_TEST_WEIGHTS_DIR"):
            extra.append(TestRecorder(self))
        return extra

    def run_folder(self, folder):
        return WritingFolder(folder) if self.index == 0 else SilentFolder(folder)

    @property
    def PreciseBatchNorm(self):  # noqa: N802 (stands for the class in training.fit)
        return _precise_batch_norm_class()


@contextlib.contextmanager
def local_only():
    """No distribution in the block: model.save makes a throwaway optimizer, whose
    variables would otherwise be placed across all processes (a collective that
    the processes not saving never join: a hang)."""
    import keras

    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


class WritingFolder:
    """Process 0's run folder: checkpoints.RunFolder, saving with the weights copied locally."""

    def __init__(self, folder):
        self.folder, self.path = folder, folder.path

    def save(self, model, state, best_weights=None, at_epoch_end=False):
        with local_only():
            return self.folder.save(model, state, best_weights, at_epoch_end)

    def load_best_weights(self, model, state):
        return self.folder.load_best_weights(model, state)


class SilentFolder(WritingFolder):
    """The other processes: the same in-memory state, nothing written."""

    best = None

    def save(self, model, state, best_weights=None, at_epoch_end=False):
        if best_weights is not None:
            self.best = best_weights
        return 0

    def load_best_weights(self, model, state):
        if self.best is not None:
            model.set_weights(self.best)
            return True
        return self.folder.load_best_weights(model, state)


@functools.cache
def _precise_batch_norm_class():  # defined on first use: it needs Keras, this module does not
    from pyimagesearch import callbacks

    class JaxPreciseBatchNorm(callbacks.PreciseBatchNorm):
        """callbacks.PreciseBatchNorm on JAX: each process computes the same statistics
        on local copies of the weights (no collective), then assigns them alike."""

        def on_test_begin(self, logs=None):
            model = self.model
            self.local = ([np.asarray(v.value) for v in model.trainable_variables],
                          [np.asarray(v.value) for v in model.non_trainable_variables])
            super().on_test_begin(logs)

        def batch_statistics(self, layers, images):
            import jax

            model = self.model
            if self.forward is None:
                paths = [v.path for v in model.non_trainable_variables]
                self.where = [(paths.index(layer.moving_mean.path),
                               paths.index(layer.moving_variance.path)) for layer in layers]

                def forward(trainable, non_trainable, batch):
                    # Momentum 0 while tracing: the moving variables come out as this
                    # batch's statistics (as in the TensorFlow version).
                    momenta = [layer.momentum for layer in layers]
                    for layer in layers:
                        layer.momentum = 0.0
                    try:
                        return model.stateless_call(trainable, non_trainable, batch,
                                                    training=True)[1]
                    finally:
                        for layer, momentum in zip(layers, momenta):
                            layer.momentum = momentum

                self.forward = jax.jit(forward)
            new = self.forward(*self.local, np.asarray(images))
            return [(np.asarray(new[mean]), np.asarray(new[variance]))
                    for mean, variance in self.where]

    return JaxPreciseBatchNorm


class TestRecorder:
    """POKEDEX_TEST_WEIGHTS_DIR: per epoch, a JSON of what this worker saw and holds;
    POKEDEX_TEST_KILL=K:E makes worker K SIGKILL itself when epoch E begins."""

    def __new__(cls, worker):
        import keras

        class Recorder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.steps = 0
                kill = os.environ.get("POKEDEX_TEST_KILL", "")
                if kill and kill == f"{worker.index}:{epoch + 1}":
                    os.kill(os.getpid(), signal.SIGKILL)

            def on_train_batch_end(self, batch, logs=None):
                self.steps += 1

            def on_epoch_end(self, epoch, logs=None):
                import hashlib

                digest = hashlib.sha256()
                for weights in self.model.get_weights():
                    digest.update(np.ascontiguousarray(weights).tobytes())
                record = {"process": worker.index, "processes": worker.count,
                          "epoch": epoch + 1, "weights_sha256": digest.hexdigest(),
                          "steps": self.steps, "process_batch": worker.batch_size,
                          "global_batch": worker.batch_size * worker.count,
                          "images": self.steps * worker.batch_size,
                          "rows": sorted(int(row) for row in worker.rows),
                          "loss": float(logs["loss"]), "val_loss": float(logs["val_loss"])}
                folder = os.environ["POKEDEX_TEST_WEIGHTS_DIR"]
                with open(os.path.join(folder, f"worker{worker.index}-epoch{epoch + 1}.json"),
                          "w") as handle:
                    json.dump(record, handle)

        return Recorder()


def die_with_parent(parent_pid):
    """End this worker when the parent ends, even while it waits in a collective (a futex,
    deaf to SIGTERM): the kernel's SIGKILL on Linux (prctl PR_SET_PDEATHSIG), and
    elsewhere a thread that polls the parent's pid."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PDEATHSIG

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)  # the parent is gone (before prctl, or no prctl here)

    threading.Thread(target=watch, daemon=True).start()


def worker_main(argv):
    """One worker: join the others, then training.fit on this process's share."""
    if os.environ.get(PARENT_VARIABLE):
        die_with_parent(int(os.environ[PARENT_VARIABLE]))
    with open(argv[0]) as handle:
        settings = json.load(handle)
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from pyimagesearch import cli, training

    cli.import_tensorflow_quietly()  # tf.data reads the batches
    import keras

    keras.distribution.initialize()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(auto_shard_dataset=False))
    worker = Worker(jax.process_index(), jax.process_count(), settings)
    log = print if worker.index == 0 else (lambda *args, **kwargs: None)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    data = training.load_data(settings, log=lambda *args, **kwargs: None)
    keras.utils.set_random_seed(settings["seed"])  # the same on every process
    # The parent left the run folder (epoch 0 at least): every process loads it.
    run = training.prepare_run(data, settings, log=lambda *args, **kwargs: None)
    # The checkpoint was compiled by TensorFlow on a CPU, where Keras turns XLA off
    # (jit_compile False, saved with it): on JAX that runs every op eagerly.
    run.model.jit_compile = True
    try:
        training.fit(run, data, settings, log, worker=worker)
    except training.TrainingDiverged as error:
        log(f"[ERROR] {error}")
        return DIVERGED
    except KeyboardInterrupt:
        if worker.index == 0 and run.checkpoint is not None:
            run.checkpoint.save(run.model)
        return 130
    if run.checkpoint is not None:  # the parent reads the last epoch and the best one
        run.checkpoint.save(run.model, at_epoch_end=True)
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
