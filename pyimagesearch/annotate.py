"""Drawing the prediction on a copy of the image, as the tutorial does."""

import os
import sys

import numpy as np

from pyimagesearch.imageio import open_rgb

DISPLAY_WIDTH = 400  # the tutorial's imutils.resize(output, width=400)
MAX_DISPLAY_HEIGHT = 3 * DISPLAY_WIDTH  # a 10x1000 strip must not become 400x40000
FONT_SCALE = 0.7  # the tutorial's cv2.putText size, at 400 px wide
MIN_FONT_SCALE = 0.4  # smallest that stays legible; longer text shrinks to this
COLORS = {True: (0, 160, 0), False: (0, 0, 220), None: (0, 0, 0), "unknown": (0, 120, 230)}


def annotated_copy(path, text, correct=None):
    """Return a BGR uint8 copy of `path`, 400 px wide, with `text` drawn on it.

    `text` is one line or a list of lines (top-k). The first line is green for
    a correct guess, red for a wrong one, orange for "unknown", black when
    the truth is not known (correct=None); further lines are dark grey.
    Very tall images are shrunk to at most 1200 px high and centred on a white
    400 px canvas; images too short for the text get a white band above them.
    """
    import cv2
    from PIL import Image

    lines = [text] if isinstance(text, str) else list(text)
    image = open_rgb(path, DISPLAY_WIDTH)
    width, height = image.size
    scale = min(DISPLAY_WIDTH / width, MAX_DISPLAY_HEIGHT / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    rgb = np.asarray(image.resize(size, Image.BILINEAR))
    if size[0] < DISPLAY_WIDTH:  # tall image: pad left and right with white
        left = (DISPLAY_WIDTH - size[0]) // 2
        rgb = np.pad(rgb, ((0, 0), (left, DISPLAY_WIDTH - size[0] - left), (0, 0)),
                     constant_values=255)
    output = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    font = cv2.FONT_HERSHEY_SIMPLEX
    widest = max(cv2.getTextSize(line, font, FONT_SCALE, 2)[0][0] for line in lines)
    font_scale = max(MIN_FONT_SCALE, min(FONT_SCALE, FONT_SCALE * (DISPLAY_WIDTH - 20) / widest))
    thickness = 2 if font_scale >= 0.6 else 1
    (_, line_height), baseline = cv2.getTextSize("Ag", font, font_scale, thickness)
    step = line_height + baseline + 6
    band_height = 14 + step * len(lines)
    band_width = min(DISPLAY_WIDTH, 20 + max(
        cv2.getTextSize(line, font, font_scale, thickness)[0][0] for line in lines))
    if output.shape[0] < 2 * band_height:  # short image: the text gets its own band
        output = np.concatenate([np.full((band_height, DISPLAY_WIDTH, 3), 255, np.uint8),
                                 output])
    # A white band behind the text keeps it legible on any image.
    cv2.rectangle(output, (0, 0), (band_width, band_height), (255, 255, 255), thickness=-1)
    first_color = COLORS["unknown" if correct == "unknown" else correct]
    for number, line in enumerate(lines):
        color = first_color if number == 0 else (60, 60, 60)
        cv2.putText(output, line, (10, 7 + line_height + number * step), font, font_scale,
                    color, thickness, cv2.LINE_AA)
    return output


def output_name(image_path):
    """`photos/img 1.jpg?x=2` -> `img 1_classified.png` (characters unsafe in file names become _)."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    stem = "".join(c if c.isalnum() or c in " -_.+" else "_" for c in stem).strip() or "image"
    return f"{stem}_classified.png"


def output_paths(image_paths, folder):
    """One annotated-image path per input, under `folder`, mirroring the inputs' sub-folders.

    Two inputs never share an output (`a.png` and `a.jpg` give `a_classified.png`
    and `a_classified-2.png`), and no output is ever one of the inputs.
    """
    absolute = [os.path.abspath(path) for path in image_paths]
    root = os.path.commonpath([os.path.dirname(path) for path in absolute]) if absolute else ""
    inputs = {os.path.realpath(path) for path in absolute}
    taken, outputs = set(), []
    for path in absolute:
        base, extension = os.path.splitext(os.path.join(
            folder, os.path.relpath(os.path.dirname(path), root), output_name(path)))
        candidate, number = os.path.normpath(base + extension), 1
        while candidate in taken or os.path.realpath(candidate) in inputs:
            number += 1
            candidate = os.path.normpath(f"{base}-{number}{extension}")
        taken.add(candidate)
        outputs.append(candidate)
    return outputs


def check_output_extension(path):
    """A one-line reason if no image writer knows `path`'s extension, else None.

    No extension is fine (written as PNG). Cheap: OpenCV only, checked before
    TensorFlow starts.
    """
    import cv2

    extension = os.path.splitext(os.fspath(path))[1]
    if not extension or cv2.haveImageWriter("x" + extension):
        return None
    return (f"no image writer knows the extension {extension!r} of {path}; "
            "use .png, .jpg, .webp, .bmp or .tif")


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
