"""The batch contract between the input pipeline, the model, the losses and the trainer.

A training or evaluation batch is a ``dict[str, np.ndarray]`` with these keys (B = batch size,
S = crop size, N = points per cloud, Hm = heat-map size, J = 21 joints):

=============== ================= ======== ==================================================
key             shape             dtype    meaning
=============== ================= ======== ==================================================
``rgb``         [B, S, S, 3]      float32  colour crop, per-channel normalised
                                           (``(x/255 − RGB_MEAN) / RGB_STD``)
``pose``        [B, J, 3]         float32  3-D keypoints in the view-corrected camera frame,
                                           root-relative (middle MCP) and divided by ``scale``
``heatmaps``    [B, Hm, Hm, J]    float32  2-D keypoint Gaussians in [0, 1]
``cloud``       [B, N, 3]         float32  hand-surface points, same frame and normalisation
                                           as ``pose``
``labelled``    [B]               float32  1 where pose/heat maps supervise, 0 otherwise
``keypoints_2d`` [B, J, 2]        float32  keypoints in crop pixels (u, v)
``visible``     [B, J]            float32  1 where the keypoint is visible
``root``        [B, 3]            float32  root position, metres, view-corrected frame
``scale``       [B]               float32  reference bone length (middle MCP→PIP), metres
``cloud_resampled`` [B]           float32  1 where fewer than N points existed (sampled with
                                           replacement)
=============== ================= ======== ==================================================

Metric pose in millimetres is ``1000 · (pose · scale[:, None, None])`` (root-relative) — the
evaluation restores root and scale exactly as hand3d does.
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 21
RGB_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
RGB_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

BATCH_KEYS = ("rgb", "pose", "heatmaps", "cloud", "labelled", "keypoints_2d", "visible",
              "root", "scale", "cloud_resampled")


def batch_shapes(batch_size: int, image_size: int, num_points: int, heatmap_size: int
                 ) -> dict[str, tuple[int, ...]]:
    """Shape of every batch entry for the given sizes."""
    b, j = batch_size, NUM_JOINTS
    return {
        "rgb": (b, image_size, image_size, 3),
        "pose": (b, j, 3),
        "heatmaps": (b, heatmap_size, heatmap_size, j),
        "cloud": (b, num_points, 3),
        "labelled": (b,),
        "keypoints_2d": (b, j, 2),
        "visible": (b, j),
        "root": (b, 3),
        "scale": (b,),
        "cloud_resampled": (b,),
    }


def dummy_batch(batch_size: int = 2, image_size: int = 64, num_points: int = 256,
                heatmap_size: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """A random batch with the contract's shapes and dtypes, for model and trainer tests.

    Values are plausible in range (poses of unit-ish scale, heat maps in [0, 1]) but carry no
    geometry; use the synthetic data set where consistency matters.
    """
    rng = np.random.default_rng(seed)
    shapes = batch_shapes(batch_size, image_size, num_points, heatmap_size)
    batch = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    batch["heatmaps"] = rng.uniform(0, 1, shapes["heatmaps"]).astype(np.float32)
    batch["labelled"] = np.ones(shapes["labelled"], np.float32)
    batch["visible"] = np.ones(shapes["visible"], np.float32)
    batch["keypoints_2d"] = rng.uniform(0, image_size, shapes["keypoints_2d"]).astype(np.float32)
    batch["root"] = np.tile(np.array([0.0, 0.0, 0.5], np.float32), (batch_size, 1))
    batch["scale"] = np.full((batch_size,), 0.03, np.float32)
    batch["cloud_resampled"] = np.zeros((batch_size,), np.float32)
    batch["pose"][:, 12] = 0.0  # root joint is the origin
    return batch


TARGETS = ("pose", "heatmaps", "cloud")
EVALUATION_KEYS = ("pose", "keypoints_2d", "visible", "root", "scale")


def required_keys(targets: tuple[str, ...], uses_cloud_input: bool, *, evaluation: bool
                  ) -> tuple[str, ...]:
    """The batch keys a strategy reads, in ``BATCH_KEYS`` order (pass them as ``keys=``).

    Training reads ``rgb``, ``labelled`` (the supervision mask), each decoded target
    (``pose``, ``heatmaps``, ``cloud``) and ``cloud`` when an encoder reads it; ``cloud``
    brings ``cloud_resampled``. Evaluation adds what metrics and figures read: ``pose``,
    ``keypoints_2d``, ``visible``, ``root`` and ``scale``. For example R2P trains on
    ``("rgb", "pose", "labelled")``, with neither heat maps nor clouds.

    Args:
      targets: the strategy's decoded modalities (``registry.Strategy.targets``), a subset
        of ``TARGETS``.
      uses_cloud_input: whether its encoders read ``batch["cloud"]``
        (``registry.Strategy.uses_cloud_input``).
      evaluation: add the keys of evaluation and figures.

    Raises:
      ValueError: an unknown target.
    """
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise ValueError(f"targets: unknown {unknown}; known: {TARGETS}")
    wanted = {"rgb", "labelled", *targets}
    if uses_cloud_input:
        wanted.add("cloud")
    if "cloud" in wanted:
        wanted.add("cloud_resampled")
    if evaluation:
        wanted.update(EVALUATION_KEYS)
    return tuple(key for key in BATCH_KEYS if key in wanted)
