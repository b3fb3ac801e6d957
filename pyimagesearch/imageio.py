"""Reading one image file into the array every part of pokedex works on.

This is the single preprocessing path (STYLE.md, example 2): training,
evaluation and classify.py all call `load_image`, which returns an
(image_size, image_size, 3) uint8 RGB array. Scaling to [0, 1] happens inside
the model (a Rescaling layer), so there is no second copy of it anywhere.

Files are recognised by content, never by name: `x.png:large`, a PNG named
`.jpg` and `00000021.jpg?resize=1196,1196` all load; text files, `.DS_Store`,
zero-byte and truncated files raise `UnreadableImageError`. Nothing here
imports TensorFlow, so classify.py can use it cheaply.
"""

import warnings

import numpy as np
from PIL import Image, ImageOps

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
# Modes Image.reduce handles (not palette, not 16-bit: those are converted first).
REDUCIBLE_MODES = ("RGB", "RGBA", "L", "LA", "CMYK", "RGBa", "La")


class UnreadableImageError(ValueError):
    """A file that is not an image we can decode (the message names the file)."""


def load_image(path, image_size):
    """Decode `path` into an (image_size, image_size, 3) uint8 RGB array.

    EXIF orientation is applied, animated images give their first frame,
    grayscale / 16-bit / palette / RGBA / CMYK become 8-bit RGB, and the image
    is resized (bilinear, aspect ratio not kept, as in the tutorial).
    """
    image = open_rgb(path, image_size)
    return np.asarray(image.resize((image_size, image_size), Image.BILINEAR), dtype=np.uint8)


def open_rgb(path, min_size):
    """Decode `path` into an upright 8-bit RGB PIL image at least ~`min_size` px.

    JPEGs are decoded at a reduced scale when that still gives `min_size`;
    other formats at full size. Raises UnreadableImageError naming the file.
    """
    try:
        with Image.open(path) as image:
            image = _decode_small(image, min_size)
            return _to_rgb8(ImageOps.exif_transpose(image))
    except UnreadableImageError:
        raise
    except FileNotFoundError:
        raise UnreadableImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UnreadableImageError(f"{path}: is a directory") from None
    except Image.UnidentifiedImageError:
        raise UnreadableImageError(f"{path}: not an image file") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        # Truncated data, corrupt chunks, bad headers: PIL uses all of these.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnreadableImageError(f"{path}: {reason}") from None
    except Exception as error:  # a decoder bug must not kill a training run
        reason = str(error).splitlines()[0] if str(error) else ""
        raise UnreadableImageError(f"{path}: {type(error).__name__}: {reason}") from None


def _decode_small(image, image_size):
    """Decode pixels, letting JPEG decode at 1/2..1/8 scale when that is enough."""
    if image.format == "JPEG":
        # draft() picks the smallest DCT scale that stays >= the requested
        # size: a 36 MP photo decodes as ~0.6 MP, far faster and smaller.
        image.draft("RGB" if image.mode != "CMYK" else "CMYK", (image_size, image_size))
    width, height = image.size
    if width < 1 or height < 1:
        raise UnreadableImageError(f"{image.filename}: empty image ({width}x{height})")
    if width * height > MAX_DECODED_PIXELS:
        raise UnreadableImageError(
            f"{image.filename}: too large ({width}x{height} pixels, "
            f"limit {MAX_DECODED_PIXELS:,}); downscale it first"
        )
    image.load()  # raises on truncated or corrupt data
    # Other formats decode at full size (and JPEG draft stops at 1/8); shrink by a
    # whole factor at once (a box filter, ~1 ms per megapixel) so that the mode
    # conversion and transparency compositing below work on a small image: for a
    # 36 MP RGBA PNG they would otherwise hold ~0.5 GB per decoding thread.
    factor = min(width, height) // max(1, image_size)
    if factor >= 2 and image.mode in REDUCIBLE_MODES and "transparency" not in image.info:
        reduced = image.reduce(factor)
        reduced.info, reduced.format = image.info, image.format  # EXIF orientation, ...
        return reduced
    return image


def _to_rgb8(image):
    """Any PIL mode -> 8-bit RGB, compositing transparency onto BACKGROUND_RGB."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float grayscale: PIL's convert("L") clips at 255, which
        # turns most of a 16-bit image white, so scale by the value range.
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if pixels.max(initial=0) > 255 else 255.0
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
