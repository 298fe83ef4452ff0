"""Reading and converting user images to the uint8 RGB the crops are rendered from.

Grayscale, grayscale + alpha, palette, RGBA, CMYK and 16-bit images are converted, not
refused: alpha is dropped (the colour channels are kept as they are), 16-bit values are
scaled by 255/65535, one channel is repeated three times. The conversion is recorded so the
outputs can say what was done.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageError(ValueError):
    """An input image that cannot be used (the message names the file and why)."""


def to_rgb_uint8(array: Any, name: str = "image") -> tuple[np.ndarray, str | None]:
    """Converts an image array to [H, W, 3] uint8 RGB.

    Args:
      array: [H, W], [H, W, 1], [H, W, 2] (gray + alpha), [H, W, 3] or [H, W, 4] (RGBA);
        uint8, uint16 (0–65535), or float in [0, 1].
      name: what to call the input in error messages (a file name).

    Returns:
      (image [H, W, 3] uint8, a note on the conversion or None when none was needed).

    Raises:
      ImageError: an unsupported shape or dtype, or an empty image.
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
    if image.dtype == np.uint8:
        pass
    elif image.dtype in (np.uint16, np.int32, np.int64, np.uint32) and image.min() >= 0 \
            and image.max() <= 65535:
        notes.append("16-bit values scaled to 8 bits")
        image = np.round(image.astype(np.float64) * (255 / 65535)).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
            raise ImageError(f"{name}: a float image must hold values in [0, 1]; got range "
                             f"[{np.nanmin(image):.3g}, {np.nanmax(image):.3g}]")
        notes.append("float [0, 1] scaled to 8 bits")
        image = np.round(image * 255).astype(np.uint8)
    else:
        raise ImageError(f"{name}: unsupported dtype {image.dtype} (use uint8, uint16 or float "
                         "in [0, 1])")
    return np.ascontiguousarray(image), "; ".join(notes) or None


def read_image(path: str) -> tuple[np.ndarray, str | None]:
    """Reads a PNG or JPEG file as [H, W, 3] uint8 RGB (see :func:`to_rgb_uint8`).

    Raises:
      ImageError: missing, unreadable or not an image (the message names the file).
    """
    try:
        with Image.open(path) as image:
            image.load()
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
    if mode.startswith("I;16") or mode == "I":
        array = array.astype(np.int64)  # I;16B etc. come as big-endian uint16 views
    image, note = to_rgb_uint8(array, name=path)
    if mode not in ("RGB", "L", "RGBA", "LA") and note is None:
        note = f"converted from mode {mode}"
    elif mode not in ("RGB",) and note is not None:
        note = f"mode {mode}: {note}"
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
