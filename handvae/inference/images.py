"""Reading and converting user images to the uint8 RGB the crops are rendered from.

Grayscale, grayscale + alpha, palette, RGBA, CMYK and 16-bit images are converted, not
refused: alpha is dropped (the colour channels are kept as they are), 16-bit values are
scaled by 255/65535, one channel is repeated three times. A file's EXIF orientation (phone
photos) is applied first, so the pixels are upright as a viewer shows them and boxes are given
in that upright frame. The conversion is recorded so the outputs can say what was done.

The bit depth of an integer array: ``uint8`` is 8-bit and ``uint16`` 16-bit (the dtype says
so); any other integer dtype (``int32``/``int64`` from ``np.asarray(..., int)`` or arithmetic
on a uint8 image) is read by its values: 0–255 as 8-bit, up to 65535 as 16-bit. A 16-bit image
in a wide dtype whose values all happen to be ≤ 255 is then ambiguous: pass ``bit_depth=16``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
BIT_DEPTHS = (8, 16)
_EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """An input image that cannot be used (the message names the file and why)."""


def _bit_depth(image: np.ndarray, bit_depth: int | None, name: str) -> int | None:
    """8 or 16 for an integer array (see the module docstring), None for floats."""
    if bit_depth is not None and bit_depth not in BIT_DEPTHS:
        raise ValueError(f"bit_depth must be one of {BIT_DEPTHS} or None, got {bit_depth!r}")
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.integer):
        return None
    low, high = int(image.min()), int(image.max())
    if bit_depth is None:
        bit_depth = (8 if image.dtype == np.uint8 else 16 if image.dtype == np.uint16
                     else 8 if high <= 255 else 16)
    if low < 0 or high > 2 ** bit_depth - 1:
        raise ImageError(f"{name}: {bit_depth}-bit integer values must lie in "
                         f"[0, {2 ** bit_depth - 1}]; got range [{low}, {high}] "
                         f"({image.dtype})")
    return bit_depth


def to_rgb_uint8(array: Any, name: str = "image", *, bit_depth: int | None = None
                 ) -> tuple[np.ndarray, str | None]:
    """Converts an image array to [H, W, 3] uint8 RGB.

    Args:
      array: [H, W], [H, W, 1], [H, W, 2] (gray + alpha), [H, W, 3] or [H, W, 4] (RGBA);
        uint8 (0–255), uint16 (0–65535), another integer dtype (8- or 16-bit by its values,
        see the module docstring), or float in [0, 1].
      name: what to call the input in error messages (a file name).
      bit_depth: 8 or 16 to state an integer array's depth instead of inferring it.

    Returns:
      (image [H, W, 3] uint8, a note on the conversion or None when none was needed).

    Raises:
      ImageError: an unsupported shape or dtype, values outside the depth's range, or an
        empty image.
    """
    image = np.asarray(array)
    notes = []
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        notes.append(f"alpha channel dropped ({image.shape[-1]} channels)")
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        notes.append("grayscale repeated to RGB")
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ImageError(f"{name}: expected an [H, W], [H, W, 3] or [H, W, 4] image, got shape "
                         f"{image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"{name}: empty image of shape {image.shape}")
    depth = _bit_depth(image, bit_depth, name)
    if depth == 8:
        if image.dtype != np.uint8:
            notes.append(f"{image.dtype} values 0–255 read as 8 bits")
            image = image.astype(np.uint8)
    elif depth == 16:
        notes.append("16-bit values scaled to 8 bits"
                     + ("" if image.dtype == np.uint16 else f" ({image.dtype})"))
        image = np.round(image.astype(np.float64) * (255 / 65535)).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
            raise ImageError(f"{name}: a float image must hold values in [0, 1]; got range "
                             f"[{np.nanmin(image):.3g}, {np.nanmax(image):.3g}]")
        notes.append("float [0, 1] scaled to 8 bits")
        image = np.round(image * 255).astype(np.uint8)
    else:
        raise ImageError(f"{name}: unsupported dtype {image.dtype} (use uint8, uint16, another "
                         "integer dtype holding 0–255 or 0–65535, or float in [0, 1])")
    return np.ascontiguousarray(image), "; ".join(notes) or None


def read_image(path: str) -> tuple[np.ndarray, str | None]:
    """Reads a PNG or JPEG file as [H, W, 3] uint8 RGB, upright (see :func:`to_rgb_uint8`).

    The EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): [H, W] are the upright
    image's, as a photo viewer shows it.

    Raises:
      ImageError: missing, unreadable or not an image (the message names the file).
    """
    try:
        with Image.open(path) as opened:
            opened.load()
            orientation = opened.getexif().get(_EXIF_ORIENTATION, 1)
            image = ImageOps.exif_transpose(opened)
            mode = image.mode
            if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                image = image.convert("RGBA" if "A" in mode or "transparency" in image.info
                                      else "RGB")
            array = np.asarray(image)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (PNG or JPEG expected)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable or truncated image ({e})") from None
    bit_depth = None
    if mode.startswith("I;16") or mode == "I":  # 16-bit PNG, even when its values are ≤ 255
        bit_depth = 16
        if mode.startswith("I;16"):
            array = array.astype(np.uint16)  # I;16B etc. come as big-endian uint16 views
    image, note = to_rgb_uint8(array, name=path, bit_depth=bit_depth)
    if mode not in ("RGB", "L", "RGBA", "LA") and note is None:
        note = f"converted from mode {mode}"
    elif mode not in ("RGB",) and note is not None:
        note = f"mode {mode}: {note}"
    if orientation in range(2, 9):  # 1 is upright; other values are not orientations
        turned = f"EXIF orientation {orientation} applied"
        note = turned if note is None else f"{turned}; {note}"
    return image, note


def list_images(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expands files and folders into image files.

    Folders give their PNG/JPEG files (sorted, not recursive); files are taken as given (a
    non-image file then fails when read, naming it).

    Returns:
      (image paths, errors as (path, message)) — an empty folder or a missing path is an error.
    """
    files, errors = [], []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, n) for n in os.listdir(path)
                           if n.lower().endswith(IMAGE_EXTENSIONS)
                           and os.path.isfile(os.path.join(path, n)))
            if not found:
                errors.append((path, f"{path}: folder holds no PNG or JPEG image"))
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            errors.append((path, f"{path}: no such file or folder"))
    return files, errors
