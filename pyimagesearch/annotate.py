"""Drawing the prediction on a copy of the image, as the tutorial does."""

import os
import sys

import numpy as np

from pyimagesearch.imageio import open_rgb

DISPLAY_WIDTH = 400  # the tutorial's imutils.resize(output, width=400)


def annotated_copy(path, text, correct=None):
    """Return a BGR uint8 copy of `path`, 400 px wide, with `text` drawn on it.

    Green text for a correct guess, red for a wrong one, black when unknown.
    """
    import cv2
    import imutils

    rgb = np.asarray(open_rgb(path, DISPLAY_WIDTH))
    output = imutils.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), width=DISPLAY_WIDTH)
    color = {True: (0, 160, 0), False: (0, 0, 220), None: (0, 0, 0)}[correct]
    # A white band behind the text keeps it legible on any image.
    (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.7, 2)
    cv2.rectangle(output, (0, 0), (min(output.shape[1], text_width + 20), text_height + baseline + 20),
                  (255, 255, 255), thickness=-1)
    cv2.putText(output, text, (10, text_height + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.7, color, 2)
    return output


def write_image(path, image_bgr):
    """Write with OpenCV, creating the folder; the format follows the extension."""
    import cv2

    from pyimagesearch.persistence import atomic_path

    extension = os.path.splitext(path)[1].lower() or ".png"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path, extension) as temporary:
        if not cv2.imwrite(temporary, image_bgr):
            raise OSError(f"OpenCV could not write {path} (unsupported extension?)")


def show(image_bgr, title="Output"):
    """Open a window if there is a display; return False (and do nothing) if not."""
    if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    try:
        cv2.imshow(title, image_bgr)
        cv2.waitKey(0)
        cv2.destroyAllWindows()
    except cv2.error:
        return False
    return True
