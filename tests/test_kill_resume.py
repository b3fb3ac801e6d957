"""A real training process: Ctrl-C (exit 130), then SIGKILL mid-epoch, then resume.

Its own file so pytest-xdist runs it beside the other slow files, not after them.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("tensorflow")

from pyimagesearch.inference import Classifier  # noqa: E402
from conftest import with_ctrl_c  # noqa: E402
from test_resume import make_dataset, read_state  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ctrl_c_then_sigkill_mid_epoch_then_rerun_finishes_all_epochs(tmp_path):
    make_dataset(tmp_path / "data", count=40)
    command = [sys.executable, os.path.join(REPO, "train.py"), "-d", "data", "-m", "m.model",
               "-l", "lb.pickle", "--epochs", "4", "--image-size", "16", "--batch-size", "2",
               "--cache-dir", "cache", "--checkpoint-every", "0"]
    def start_and_signal(signal_number, after_epoch):
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, preexec_fn=with_ctrl_c)
        deadline = time.time() + 120
        while (read_state(tmp_path) or {}).get("epoch", 0) < after_epoch and time.time() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        # The checkpoint of `after_epoch` is on disk and the next epoch (30 steps,
        # ~1 s) has begun or is about to: the signal lands inside a later epoch.
        assert process.poll() is None, "training finished before the signal"
        process.send_signal(signal_number)
        return process.communicate(timeout=120), process.returncode

    # Ctrl-C: exit 130, one line saying where the progress is and how to resume.
    (out, err), code = start_and_signal(signal.SIGINT, 1)
    assert code == 130 and "Traceback" not in err, (code, err[-2000:])
    assert "run the same command again to resume" in err and "m.model.run" in err
    # Then a hard kill of the resumed run, in the middle of a later epoch.
    _, code = start_and_signal(signal.SIGKILL, read_state(tmp_path)["epoch"] + 1)
    assert code == -signal.SIGKILL
    killed_at = read_state(tmp_path)["epoch"]
    assert 2 <= killed_at < 4
    assert not (tmp_path / "m.model").exists()  # nothing final written by a killed run

    result = subprocess.run(command + ["--resume"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"resuming after epoch {killed_at}" in result.stdout
    assert f"Epoch {killed_at + 1}/4" in result.stdout
    assert "Epoch 1/4" not in result.stdout
    description = json.loads((tmp_path / "m.model.settings.json").read_text())
    assert description["epochs_run"] == 4
    assert not (tmp_path / "m.model.run").exists()  # checkpoints removed once saved
    probabilities = Classifier(str(tmp_path / "m.model"), str(tmp_path / "lb.pickle")).predict(
        [tmp_path / "data" / "dark" / "0.png"])
    assert probabilities.shape == (1, 2)
