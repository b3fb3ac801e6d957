"""train.py --workers 2 on loopback (pyimagesearch/distributed.py): a worker killed in
epoch 2 stops the other with one line; the same command resumes and finishes.

Each worker writes, per epoch, a hash of its weights and what it was fed
(POKEDEX_TEST_WEIGHTS_DIR, distributed.TestRecorder), and worker 1 SIGKILLs itself
when epoch 2 begins (POKEDEX_TEST_KILL). Two runs of a tiny SmallerVGGNet, under 2 min
on 2 cores (most of it starting the workers and JAX compiling); every subprocess has a
timeout.
"""

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("jax")
pytest.importorskip("tensorflow")

from test_resume import make_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, BATCH = 3, 8


def records(folder):
    """{(process, epoch): record} from the workers' per-epoch files."""
    found = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as handle:
            record = json.load(handle)
        found[record["process"], record["epoch"]] = record
    return found


@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    from pyimagesearch import distributed

    if distributed.allowed_workers()[0] < 2:
        pytest.skip("this machine holds fewer than 2 workers: " + distributed.allowed_workers()[1])
    root = tmp_path_factory.mktemp("workers") / "with space"
    make_dataset(root / "data", count=20)  # 40 images: 24 train, 8 val, 8 test
    out = root / "out"
    out.mkdir()
    command = [sys.executable, os.path.join(REPO, "train.py"), "-d", str(root / "data"),
               "-m", str(out / "m.model"), "-l", str(out / "lb.pickle"),
               "-p", str(out / "plot.png"), "--cache-dir", str(root / "cache"),
               "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--image-size", "16",
               "--test-split", "0.2", "--checkpoint-every", "0", "--patience", "0",
               "--workers", "2"]
    weights = root / "weights"
    weights.mkdir()
    environment = dict(os.environ, POKEDEX_TEST_WEIGHTS_DIR=str(weights))
    killed = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=dict(environment, POKEDEX_TEST_KILL="1:2"))
    ended = time.time()
    kill_time = (weights / "worker1-epoch1.json").stat().st_mtime  # just before the kill
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300,
                             env=environment)
    return {"killed": killed, "seconds_to_stop": ended - kill_time, "resumed": resumed,
            "records": records(weights), "out": out}


def test_a_killed_worker_stops_the_other_with_one_line(killed_then_resumed):
    killed = killed_then_resumed["killed"]
    assert killed.returncode == 1, killed.stdout[-3000:] + killed.stderr[-3000:]
    errors = [line for line in killed.stderr.splitlines() if "error" in line]
    assert errors == ["train.py: error: worker 1 of 2 died (exit code -9) in epoch 2; stopped "
                      "the others; run the same command again to resume"], killed.stderr[-3000:]
    assert "Traceback" not in killed.stderr
    # Detected within a poll, the other stopped by SIGTERM (SIGKILL after 5 s).
    assert killed_then_resumed["seconds_to_stop"] < 20


def test_the_same_command_resumes_and_writes_one_set_of_outputs(killed_then_resumed):
    resumed, out = killed_then_resumed["resumed"], killed_then_resumed["out"]
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming after epoch 1" in resumed.stdout
    assert f"Epoch 2/{EPOCHS}" in resumed.stdout and f"Epoch 1/{EPOCHS}" not in resumed.stdout
    assert sorted(os.listdir(out)) == sorted([
        "m.model", "lb.pickle", "plot.png", "m.model.tflite", "m.model.labels.json",
        "m.model.settings.json", "m.model.split.json", "m.model.report.html",
        "m.model.report.txt", "m.model.metrics.json", "m.model.confusion.png",
        "m.model.worst.png"])  # no run folder left, nothing from process 1
    description = json.loads((out / "m.model.settings.json").read_text())
    assert description["epochs_run"] == EPOCHS and description["settings"]["workers"] == 2


def test_workers_hold_identical_weights_and_see_one_process_worth(killed_then_resumed):
    found, out = killed_then_resumed["records"], killed_then_resumed["out"]
    assert sorted(found) == [(process, epoch) for process in (0, 1)
                             for epoch in range(1, EPOCHS + 1)]
    train_images = json.loads((out / "m.model.settings.json").read_text())["train_images"]
    assert train_images % BATCH == 0  # so one process also sees whole batches
    for epoch in range(1, EPOCHS + 1):
        first, second = found[0, epoch], found[1, epoch]
        assert first["weights_sha256"] == second["weights_sha256"], epoch
        assert first["val_loss"] == second["val_loss"] and first["loss"] == second["loss"]
        # One process: ceil(train / batch) steps of `batch` images.
        assert first["steps"] == second["steps"] == math.ceil(train_images / BATCH)
        assert first["global_batch"] == first["process_batch"] * 2 == BATCH
        assert first["images"] + second["images"] == train_images
        # Disjoint shares that cover the training rows.
        assert not set(first["rows"]) & set(second["rows"])
        assert len(first["rows"]) + len(second["rows"]) == train_images
    assert found[0, EPOCHS]["loss"] < found[0, 1]["loss"]


# --- bounds and orphans (no training: a stub jax holds each worker in a futex) ----------------

def test_more_workers_than_the_machine_holds_are_refused_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), "-d", str(tmp_path / "no data"),
         "-m", str(tmp_path / "m.model"), "-l", str(tmp_path / "lb.pickle"),
         "--workers", "4096", "--batch-size", "4096"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(r"train.py: error: --workers 4096: this machine can run at most (\d+) "
                        r"worker processes \(\d+ CPUs.*\); give --workers \1 or fewer\n",
                        result.stderr), result.stderr


STUCK_JAX = """import os, threading
open(os.path.join(os.environ["STUCK_READY"], str(os.getpid())), "w").close()
lock = threading.Lock(); lock.acquire(); lock.acquire()  # a collective that never ends
"""


def gone(pid):
    """True once `pid` has exited (a zombie whose new parent has not reaped it counts)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent_whose_settings_file_the_next_run_removes(tmp_path):
    from pyimagesearch import distributed

    stub, ready, temporary = tmp_path / "stub jax", tmp_path / "ready", tmp_path / "tmp dir"
    for folder in (stub / "jax", ready, temporary):
        folder.mkdir(parents=True)
    (stub / "jax" / "__init__.py").write_text(STUCK_JAX)
    environment = dict(os.environ, PYTHONPATH=str(stub), TMPDIR=str(temporary),
                       STUCK_READY=str(ready))
    parent = subprocess.Popen(
        [sys.executable, "-c", "from pyimagesearch import distributed; "
                               "distributed.run_workers({'workers': 2}, print)"],
        cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = [int(name) for name in os.listdir(ready)]
        assert len(workers) == 2, "the workers did not start"
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5  # the kernel's signal is at once; the poll takes 1 s
        while not all(gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in workers if not gone(pid)] == [], "workers outlived the parent"
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    (left,) = temporary.iterdir()  # the killed parent's settings file
    assert left.name.startswith(f"pokedex-workers-{parent.pid}-")
    running = temporary / f"pokedex-workers-{os.getpid()}-x.json"  # a live parent's
    running.write_text("{}")
    distributed.remove_orphaned_settings(str(temporary))
    assert list(temporary.iterdir()) == [running]
