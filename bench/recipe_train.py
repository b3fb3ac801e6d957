"""The tutorial's train.py, as written, on Keras 3: the benchmark's baseline.

Every image is read with cv2.imread, resized to 96x96 and appended as a
float32 array, the list becomes one float64 array scaled to [0, 1] (the
tutorial's `np.array(data, dtype="float") / 255.0`), train_test_split copies
it, and the model trains from `ImageDataGenerator(...).flow`, batch 32,
Adam(1e-3, decay=lr/epochs), saving the last epoch.

Two Keras 3 adaptations, both keeping the recipe's work per epoch:
- `decay=` is gone; InverseTimeDecay(lr, 1, lr/epochs) is the same schedule.
- The tutorial's steps_per_epoch=len(trainX)//BS makes Keras 3 stop every
  other epoch after one batch (the flow iterator has ceil(n/BS) batches and
  is only restarted once exhausted), so we pass ceil(n/BS) = len(flow),
  which trains on every image each epoch, as Keras 2 did.

    python bench/recipe_train.py --dataset D --model M --labelbin L --epochs 3
"""

import argparse
import math
import os
import pickle
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import probe  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")  # imutils.paths


def list_images(root):
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                yield os.path.join(folder, name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-d", "--dataset", required=True)
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("-l", "--labelbin", required=True)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import cv2
    import numpy as np
    import tensorflow as tf
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from tensorflow.keras.preprocessing.image import img_to_array

    from pyimagesearch.smallervggnet import SmallerVGGNet

    epochs, init_lr, batch_size, image_dims = args.epochs, 1e-3, args.batch_size, (96, 96, 3)
    probe.emit("imports_done")
    data, labels = [], []
    image_paths = sorted(list_images(args.dataset))
    random.seed(42)
    random.shuffle(image_paths)
    for image_path in image_paths:
        image = cv2.imread(image_path)
        image = cv2.resize(image, (image_dims[1], image_dims[0]))
        image = img_to_array(image)
        data.append(image)
        labels.append(image_path.split(os.path.sep)[-2])
    data = np.array(data, dtype="float") / 255.0
    labels = np.array(labels)
    probe.emit("data_loaded", images=len(data), data_megabytes=data.nbytes / 2**20)

    label_binarizer = LabelBinarizer()
    labels = label_binarizer.fit_transform(labels)
    train_x, test_x, train_y, test_y = train_test_split(data, labels, test_size=0.2,
                                                        random_state=42)
    augment = tf.keras.preprocessing.image.ImageDataGenerator(
        rotation_range=25, width_shift_range=0.1, height_shift_range=0.1, shear_range=0.2,
        zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")
    tf.keras.utils.set_random_seed(42)
    model = SmallerVGGNet.build(image_dims[1], image_dims[0], image_dims[2],
                                len(label_binarizer.classes_))
    schedule = tf.keras.optimizers.schedules.InverseTimeDecay(init_lr, 1, init_lr / epochs)
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                  optimizer=tf.keras.optimizers.Adam(learning_rate=schedule))
    flow = augment.flow(train_x, train_y, batch_size=batch_size)
    probe.emit("train_start", train_images=len(train_x), val_images=len(test_x))
    model.fit(flow, validation_data=(test_x, test_y),
              steps_per_epoch=math.ceil(len(train_x) / batch_size), epochs=epochs,
              callbacks=[probe.timing_callback()], verbose=2)
    probe.emit("fit_done")  # VmHWM here is the peak up to the end of training
    started = time.time()
    model.save(args.model)
    with open(args.labelbin, "wb") as handle:
        handle.write(pickle.dumps(label_binarizer))
    probe.emit("saved", save_seconds=time.time() - started)


if __name__ == "__main__":
    main()
