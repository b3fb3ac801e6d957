"""Run the project's real train.py with timing probes attached, for bench_train.py.

    python bench/project_train.py <train.py arguments...>

train.py itself is unchanged: its main() runs as `python train.py ...` would.
We only wrap functions from the outside: the image-folder loader (to
time data start-up), the split (to count training images; the last split
before training is the training set) and keras.Model.fit
(to add the probe's timing callback). TensorFlow is still imported where
train.py imports it.
"""

import os
import runpy
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import probe  # noqa: E402


def attach_probes():
    from pyimagesearch import dataset, training

    load_image_folder = dataset.load_image_folder

    def timed_load(*args, **kwargs):
        started = time.time()
        folder = load_image_folder(*args, **kwargs)
        probe.emit("data_loaded", images=len(folder.paths),
                   load_seconds=time.time() - started)
        return folder

    dataset.load_image_folder = timed_load
    import_tensorflow_quietly = training.import_tensorflow_quietly

    def import_and_patch():
        device = import_tensorflow_quietly()
        import keras

        from pyimagesearch import pipeline

        fit = keras.Model.fit

        def fit_with_timing(self, *args, callbacks=None, **kwargs):
            history = fit(self, *args,
                          callbacks=list(callbacks or []) + [probe.timing_callback()], **kwargs)
            probe.emit("fit_done")  # VmHWM here is the peak up to the end of training
            return history

        keras.Model.fit = fit_with_timing
        # The split moved from pipeline to dataset; count it wherever it lives.
        for module in (pipeline, dataset):
            if hasattr(module, "stratified_split"):
                module.stratified_split = counted(module.stratified_split)
        return device

    def counted(split):
        def counted_split(*args, **kwargs):
            train_rows, val_rows = split(*args, **kwargs)
            probe.emit("train_start", train_images=len(train_rows), val_images=len(val_rows))
            return train_rows, val_rows

        return counted_split

    training.import_tensorflow_quietly = import_and_patch


if __name__ == "__main__":
    attach_probes()
    sys.argv = [os.path.join(REPO, "train.py")] + sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
