"""Reading one image file into the array every part of pokedex works on.

This is the single preprocessing path (STYLE.md, example 2): training,
evaluation and classify.py all call `load_image`, which returns an
(image_size, image_size, 3) uint8 RGB array. Scaling to [0, 1] happens inside
the model (a Rescaling layer), so there is no second copy of it anywhere.

Files are recognised by content, never by name: `x.png:large`, a PNG named
`.jpg` and `00000021.jpg?resize=1196,1196` all load; text files, `.DS_Store`,
zero-byte and truncated files raise `UnreadableImageError`. Nothing here
imports TensorFlow, so classify.py can use it cheaply.

An image already in memory (a PIL image or a uint8 array, as the Python API
takes) goes through the same steps in `prepare_image`. Finding the image
files a folder or glob names, and screening out what is not an image, live
here too (`find_images`, `screen_images`), beside the reader they serve.
"""

import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageMode, ImageOps

# Decoded pixels we accept after JPEG draft-mode reduction. PIL's own default
# (~89 MP, 268 MB as RGB) keeps a 36 MP photo loadable while a 20000x20000
# "decompression bomb" PNG is refused before its pixels are allocated.
MAX_DECODED_PIXELS = Image.MAX_IMAGE_PIXELS
# We check sizes ourselves (after draft mode), so PIL's warning is noise, and
# its hard limit (2x) is lifted so a huge JPEG can still be draft-decoded small.
Image.MAX_IMAGE_PIXELS = None
warnings.simplefilter("ignore", Image.DecompressionBombWarning)
# Damaged files make PIL warn ("Tag data larger than file", "Truncated File
# Read"); we report each unusable file once ourselves, so these are noise.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

# Transparent pixels (RGBA sprites, palette PNGs) are composited onto white,
# the background most product-style and sprite images use.
BACKGROUND_RGB = (255, 255, 255)
# Decoded bytes we accept (pixels x bytes per pixel of the decoded mode): an
# 8192 x 8192 RGBA image, or an RGB one at the pixel limit. 16-bit and 32-bit
# modes hold more per pixel, so they must have fewer pixels.
MAX_DECODED_BYTES = 2**28
# Modes reduced as they are (a box filter), before their cheap conversion to RGB.
PLAIN_MODES = ("RGB", "L", "CMYK")
# Any other mode (alpha, transparency, palette, 16-bit) is converted to RGB before it is
# reduced, this many pixels at a time, so no full-size copy in a wider mode is made.
BAND_PIXELS = 2**22
WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class UnreadableImageError(ValueError):
    """A file that is not an image we can decode (the message names the file)."""


def load_image(path, image_size):
    """Decode `path` into an (image_size, image_size, 3) uint8 RGB array.

    EXIF orientation is applied, animated images give their first frame,
    grayscale / 16-bit / palette / RGBA / CMYK become 8-bit RGB, and the image
    is resized (bilinear, aspect ratio not kept, as in the tutorial).
    """
    return _resized(open_rgb(path, image_size), image_size)


def prepare_image(image, image_size, name="image"):
    """`load_image` for an image in memory: a PIL image, or a uint8 array (H, W), (H, W, 3|4).

    The same steps as for a file (a lazily opened JPEG still decodes at a
    reduced scale, so `Image.open(path)` gives exactly what `path` gives):
    returns (image_size, image_size, 3) uint8 RGB. Arrays are read as RGB(A)
    or grey; anything else raises UnreadableImageError naming `name`.
    """
    if isinstance(image, np.ndarray):
        image = _from_array(image, name)
    elif not isinstance(image, Image.Image):
        raise UnreadableImageError(f"{name}: expected a PIL image or a uint8 array, "
                                   f"got {type(image).__name__}")
    try:
        return _resized(_upright_rgb8(image, image_size, name), image_size)
    except UnreadableImageError:
        raise
    except Exception as error:
        raise _decoding_error(name, error) from None


def open_rgb(path, min_size):
    """Decode `path` into an upright 8-bit RGB PIL image at least ~`min_size` px.

    JPEGs are decoded at a reduced scale when that still gives `min_size`;
    other formats at full size. Raises UnreadableImageError naming the file.
    """
    problem = _not_a_regular_file(path) if isinstance(path, (str, os.PathLike)) else None
    if problem:
        raise UnreadableImageError(problem)
    try:
        with Image.open(path) as image:
            return _upright_rgb8(image, min_size, path)
    except UnreadableImageError:
        raise
    except FileNotFoundError:
        raise UnreadableImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UnreadableImageError(f"{path}: is a directory") from None
    except Image.UnidentifiedImageError:
        raise UnreadableImageError(f"{path}: not an image file") from None
    except Exception as error:
        raise _decoding_error(path, error) from None


def _decoding_error(name, error):
    """The UnreadableImageError for what PIL raised while decoding `name`."""
    reason = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, (OSError, ValueError, SyntaxError, EOFError, MemoryError)):
        # Truncated data, corrupt chunks, bad headers: PIL uses all of these.
        return UnreadableImageError(f"{name}: {reason or type(error).__name__}")
    # Anything else is a decoder bug, which must not kill a training run.
    return UnreadableImageError(f"{name}: {type(error).__name__}: {reason}")


def _upright_rgb8(image, min_size, name):
    """An open PIL image -> decoded, upright, 8-bit RGB, at least ~`min_size` px."""
    return _to_rgb8(ImageOps.exif_transpose(_decode_small(image, min_size, name)))


def _resized(image, image_size):
    """(image_size, image_size, 3) uint8: bilinear, aspect ratio not kept (the tutorial's)."""
    return np.asarray(image.resize((image_size, image_size), Image.BILINEAR), dtype=np.uint8)


def _from_array(pixels, name):
    """A uint8 array (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA as a PIL image."""
    if pixels.dtype != np.uint8:
        raise UnreadableImageError(f"{name}: expected uint8 pixels 0-255, got {pixels.dtype} "
                                   "(e.g. np.asarray(image, dtype=np.uint8))")
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] not in (3, 4)):
        raise UnreadableImageError(f"{name}: expected an array (H, W), (H, W, 3) or "
                                   f"(H, W, 4), got shape {pixels.shape}")
    return Image.fromarray(np.ascontiguousarray(pixels))


def find_images(spec, exclude=None):
    """The files `--image` names: a folder (recursively, hidden folders left out) or a glob.

    Returns sorted paths; files inside the `exclude` folder (classify.py's
    output folder) are left out so earlier results are not classified again.
    Symlinked folders are not followed when recursing (a folder's walk or a
    `**` in a glob), so a link loop such as `up -> ..` cannot repeat files or
    hang; a file reached twice (two links to it) is listed once.
    """
    import glob

    if os.path.isdir(spec):
        roots = [spec]
    else:
        roots = sorted(_glob_without_links(spec) if "**" in spec else glob.glob(spec))
    excluded = os.path.realpath(exclude) if exclude and os.path.isdir(exclude) else None
    found = []
    for root in roots:
        if not os.path.isdir(root):
            found.append(root)  # a FIFO or socket too: screen_images names and skips it
            continue
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            # Only a sub-folder: `-i photos -o photos` still classifies photos/.
            if excluded and folder != root and os.path.realpath(folder) == excluded:
                subfolders[:] = []
                continue
            found.extend(os.path.join(folder, name) for name in sorted(names))
    by_real_path = {}  # a file matched twice (by the glob and a walk, or by two links) once
    for path in found:
        by_real_path.setdefault(os.path.realpath(path), path)
    return list(by_real_path.values())


def _glob_without_links(spec):
    """glob.glob(spec, recursive=True), except that `**` never enters a symlinked folder.

    Python's own `**` follows links, so `up -> ..` repeats every file and two
    such links grow the search exponentially. Each `**` here is an
    os.walk(followlinks=False); other parts match as glob does (fnmatch on one
    level, hidden names only for a pattern that starts with a dot).
    """
    import fnmatch
    import glob

    def join(path, name):
        return os.path.join(path, name) if path else name  # "" is the current folder

    absolute = os.path.isabs(spec)
    parts = spec.split(os.sep)[1 if absolute else 0:]
    paths = [os.sep if absolute else ""]
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        matched = []
        for path in paths:
            base = path or os.curdir
            if part == "**":
                for folder, subfolders, names in os.walk(base):  # never follows links
                    subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                    here = join(path, os.path.relpath(folder, base)) if folder != base else path
                    matched.append(here)
                    if last:  # a trailing ** names files too, as glob's does
                        matched.extend(join(here, name) for name in sorted(names + subfolders)
                                       if not name.startswith("."))
            elif not part or not glob.has_magic(part):
                matched.append(join(path, part) if part else path)
            else:
                try:
                    names = sorted(entry.name for entry in os.scandir(base))
                except OSError:
                    continue
                if not part.startswith("."):
                    names = [name for name in names if not name.startswith(".")]
                matched.extend(join(path, name) for name in fnmatch.filter(names, part))
        paths = [path for path in dict.fromkeys(matched)
                 if not path or (os.path.lexists(path) and (last or os.path.isdir(path)))]
    return [path for path in paths if path]


def screen_images(paths, on_skip):
    """Paths whose header Pillow recognises (cheap: nothing is decoded yet).

    Catches text files, .DS_Store, empty files and what is not a regular file
    (a FIFO would block the reader forever) before TensorFlow starts;
    truncated images are caught later, when they are decoded for prediction.
    """
    kept = []
    for path in paths:
        problem = _not_a_regular_file(path)
        if problem:
            on_skip(path, problem)
            continue
        try:
            with Image.open(path):
                pass
        except Exception:  # any failure: get the loader's own one-line reason
            try:
                open_rgb(path, 8)
            except UnreadableImageError as error:
                on_skip(path, str(error))
                continue
        kept.append(path)
    return kept


def _not_a_regular_file(path):
    """'path: reason' when `path` is a FIFO, socket or device, else None.

    Opening a FIFO blocks until a writer comes, forever in a batch run, so
    such files are refused by their type before anything reads them.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # the opener's own error names what is wrong
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):  # a folder has its own message
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "something else")
    return f"{path}: not a regular file but {kind}"


def _decode_small(image, image_size, name):
    """Decode pixels, letting JPEG decode at 1/2..1/8 scale when that is enough.

    A large image comes back already converted to RGB and reduced, band by
    band, so no full-size intermediate of a wider mode is ever made.
    """
    if image.format == "JPEG":
        # draft() picks the smallest DCT scale that stays >= the requested
        # size: a 36 MP photo decodes as ~0.6 MP, far faster and smaller.
        image.draft("RGB" if image.mode != "CMYK" else "CMYK", (image_size, image_size))
    width, height = image.size
    if width < 1 or height < 1:
        raise UnreadableImageError(f"{name}: empty image ({width}x{height})")
    if width * height > MAX_DECODED_PIXELS:
        raise UnreadableImageError(
            f"{name}: too large ({width}x{height} pixels, "
            f"limit {MAX_DECODED_PIXELS:,}); downscale it first"
        )
    decoded_bytes = width * height * _bytes_per_pixel(image.mode)
    if decoded_bytes > MAX_DECODED_BYTES:
        raise UnreadableImageError(
            f"{name}: too large ({width}x{height} {image.mode} pixels decode to "
            f"{decoded_bytes / 2**20:,.1f} MiB, limit {MAX_DECODED_BYTES / 2**20:,.0f} MiB); "
            "downscale it first"
        )
    image.load()  # raises on truncated or corrupt data
    # Other formats decode at full size (and JPEG draft stops at 1/8): shrink by a
    # whole factor (a box filter, ~1 ms per megapixel). Converting other modes whole
    # held several full-size copies (16-bit grey as float64: 2.4 GB for a 195 KB PNG
    # of 9,400 x 9,400; a palette with transparency as RGBA: 1.5 GB), so those are
    # converted and shrunk one band of rows at a time.
    factor = max(1, min(width, height) // max(1, image_size))
    if image.mode in PLAIN_MODES and "transparency" not in image.info:
        if factor < 2:
            return image
        reduced = image.reduce(factor)  # converted after, at the small size
        reduced.info, reduced.format = image.info, image.format  # EXIF orientation, ...
        return reduced
    if factor == 1 and width * height <= BAND_PIXELS:
        return image  # small: _to_rgb8 converts it whole
    return _reduced_rgb8(image, factor)


def _bytes_per_pixel(mode):
    """What one pixel of `mode` takes once decoded (bands x sample size)."""
    try:
        descriptor = ImageMode.getmode(mode)
    except KeyError:
        return 4
    return len(descriptor.bands) * np.dtype(descriptor.typestr).itemsize


def _reduced_rgb8(image, factor):
    """`image` as 8-bit RGB, shrunk `factor` times, converted BAND_PIXELS at a time."""
    width, height = image.size
    peak = _grey_peak(image) if image.mode in WIDE_GREY_MODES else None
    rows = max(1, BAND_PIXELS // (width * factor)) * factor  # whole blocks per band
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = _to_rgb8(image.crop((0, top, width, min(height, top + rows))), peak)
        reduced.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    # EXIF orientation and the format travel on; transparency was composited above.
    reduced.info = {key: value for key, value in image.info.items() if key != "transparency"}
    reduced.format = image.format
    return reduced


def _grey_peak(image):
    """The white point of a 16-bit or float grey image: 65535 if any value exceeds 255."""
    return 65535.0 if image.getextrema()[1] > 255 else 255.0


def _to_rgb8(image, peak=None):
    """Any PIL mode -> 8-bit RGB, compositing transparency onto BACKGROUND_RGB.

    peak: the white point of a 16-bit or float grey image (of the whole image
    when this is one band of it); found from the pixels when None.
    """
    if image.mode in WIDE_GREY_MODES:
        # 16-bit and float grayscale: PIL's convert("L") clips at 255, which
        # turns most of a 16-bit image white, so scale by the value range.
        pixels = np.asarray(image, dtype=np.float64)
        peak = peak or (65535.0 if pixels.max(initial=0) > 255 else 255.0)
        gray = np.clip(pixels * (255.0 / peak), 0, 255).round().astype(np.uint8)
        image = Image.fromarray(gray, mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
