"""Fixtures for the input-pipeline tests: the stored-example contract with context.

``handvae.data.source.decode_example`` returns a stored image of side C = 2 · crop_side around
the hand's crop box (``K_image``, ``crop_side``, keypoints in stored-image pixels). The builders
write it since 2.0.0 (those examples pass through); :class:`ContextSource` turns an example of
the 1.0.0 storage (a 256² crop, ``K_crop``) into that contract: the crop reflected out to 512²
(real-looking pixels, no black), ``K_image`` = ``K_crop`` moved by 128 px, ``keypoints_2d`` +
128, ``crop_side`` = 256.
"""

import numpy as np

from handvae.data import source as source_lib


def with_context(example: dict) -> dict:
    """An example as the 2×-context contract (see module doc); 2.0.0 examples pass through."""
    example = source_lib.decode_example(example)
    if "K_image" in example:
        return example
    image = np.asarray(example["image"])
    pad = image.shape[0] // 2
    k_image = np.array(example["K_crop"], np.float32)
    k_image[:2, 2] += pad
    out = {k: v for k, v in example.items() if k != "K_crop"}
    out.update(image=np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"),
               K_image=k_image, crop_side=np.float32(image.shape[0]),
               keypoints_2d=np.asarray(example["keypoints_2d"], np.float32) + pad)
    return out


class ContextSource:
    """A random-access source whose examples follow the 2×-context contract."""

    def __init__(self, source):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        return with_context(self._source[index])


def toy_source(size: int, image_side: int = 32, points: int = 40):
    """``size`` in-memory examples (contract fields); example i has ``scale`` = i + 1."""
    rng = np.random.default_rng(0)
    crop = image_side / 2
    k = np.array([[50.0, 0, (image_side - 1) / 2], [0, 50.0, (image_side - 1) / 2], [0, 0, 1]],
                 np.float32)
    examples = []
    for i in range(size):
        pose = rng.normal(0, 1, (21, 3)).astype(np.float32)
        root = np.array([0, 0, 0.5], np.float32)
        metric = pose * 0.01 + root
        uv = metric[:, :2] / metric[:, 2:] * 50.0 + (image_side - 1) / 2
        examples.append({
            "image": rng.integers(1, 255, (image_side, image_side, 3), dtype=np.uint8),
            "K_image": k, "crop_side": np.float32(crop), "keypoints_2d": uv.astype(np.float32),
            "keypoints_3d": pose, "visible": np.ones(21, np.float32), "root": root,
            "scale": np.float32(i + 1),
            "points": rng.normal(0, 1, (points if i % 5 else 0, 3)).astype(np.float32),
            "frame": f"toy/{i:04d}".encode(), "side": 1,
            "view_rotation": np.eye(3, dtype=np.float32)})
    return examples
