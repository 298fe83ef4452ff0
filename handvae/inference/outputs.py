"""What ``experiments.predict`` writes per image: a JSON record, a PLY cloud, an overlay PNG.

JSON schema (``"schema": "handvae.prediction/1"``; lengths in the units named by the key)::

    image               the input path
    image_size          [H, W] pixels
    conversion          how the image was made 8-bit RGB (e.g. "grayscale repeated to RGB"),
                        or null
    strategy            the model's training strategy (e.g. "RC2CHP_poe")
    checkpoint          the work directory and which checkpoint ("best"/"latest")
    hand_side           "right" | "left" (left hands are mirrored for the model, outputs are
                        in the original image and camera frame)
    box                 [x0, y0, x1, y1] pixels used (the whole image when none was given)
    crop                {"center": [u, v], "side": px}: the square that was cropped;
                        "outline": 4 × [u, v] image pixels of the model crop's corners (the
                        view-corrected square, ``geometry.crop_outline``)
    intrinsics          3×3 K in pixels; "intrinsics_source": "given" | "focal" | "default_fov"
    joint_names         21 names, RHD order
    pose_3d             21 × [x, y, z]: camera frame (x right, y down, z forward),
                        root-relative (middle MCP = 0), units of the reference bone
                        (middle MCP→PIP)
    hand_scale_m        the reference-bone length given, or null
    pose_3d_m           pose_3d in metres (null without hand_scale_m)
    keypoints_2d        21 × [u, v] image pixels (pixel centres at integers)
    keypoints_2d_source "heatmaps" | "projection"
    latent_mean         D floats, mean of q(z | x_R)
    cloud_ply           file name of the decoded cloud (bone units, camera frame), or null
    num_cloud_points    N or 0
    warnings            why the prediction may be poor (e.g. a box mostly outside the image)

Each file type carries a mark of this tool (the JSON's ``schema``, the PLY's ``comment`` line,
the overlay PNG's ``Software`` text chunk), so a rerun into the same folder replaces or removes
only files it wrote itself (:func:`written_by_predict`) and refuses to overwrite anything else.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from handvae.inference import geometry
from handvae.inference.predictor import Prediction
from handvae.ops import skeleton

SCHEMA = "handvae.prediction/1"
PLY_COMMENT = "comment handvae decoded hand cloud"
OVERLAY_SOFTWARE = "handvae.predict overlay"
OUTPUT_SUFFIXES = (".json", ".png", ".ply")   # what predict may write for an image stem
FINGER_COLOURS = ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd")
VIEW_ELEVATION, VIEW_AZIMUTH = -70.0, -90.0   # 3-D panel: looking roughly along the camera axis


def prediction_record(prediction: Prediction, *, image: str, image_size: tuple[int, int],
                      strategy: str, checkpoint: str | None, intrinsics_source: str,
                      hand_scale: float | None = None, cloud_ply: str | None = None
                      ) -> dict[str, Any]:
    """The JSON record of one prediction (schema in the module docstring)."""
    crop = prediction.crop
    return {
        "schema": SCHEMA, "image": image, "image_size": list(image_size),
        "conversion": prediction.conversion, "strategy": strategy, "checkpoint": checkpoint,
        "hand_side": crop.hand_side, "box": [float(v) for v in crop.box],
        "crop": {"center": [float(v) for v in crop.center], "side": float(crop.side),
                 "outline": geometry.crop_outline(crop).tolist()},
        "intrinsics": np.asarray(crop.K, float).tolist(), "intrinsics_source": intrinsics_source,
        "joint_names": list(skeleton.JOINT_NAMES),
        "pose_3d": np.asarray(prediction.pose_3d, float).tolist(),
        "hand_scale_m": None if hand_scale is None else float(hand_scale),
        "pose_3d_m": (None if prediction.pose_3d_m is None
                      else np.asarray(prediction.pose_3d_m, float).tolist()),
        "keypoints_2d": np.asarray(prediction.keypoints_2d, float).tolist(),
        "keypoints_2d_source": prediction.keypoints_2d_source,
        "latent_mean": np.asarray(prediction.latent_mean, float).tolist(),
        "cloud_ply": cloud_ply,
        "num_cloud_points": 0 if prediction.cloud is None else len(prediction.cloud),
        "warnings": list(prediction.warnings),
    }


def write_json(record: dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


def write_ply(points: np.ndarray, path: str) -> None:
    """Writes [N, 3] points as an ASCII PLY (``element vertex N``, float x, y, z)."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    with open(path, "w") as f:
        f.write(f"ply\nformat ascii 1.0\n{PLY_COMMENT}\n"
                f"element vertex {len(points)}\nproperty float x\nproperty float y\n"
                f"property float z\nend_header\n")
        np.savetxt(f, points, fmt="%.6g")


def read_ply(path: str) -> np.ndarray:
    """Reads the vertices of an ASCII PLY written by :func:`write_ply` → [N, 3]."""
    with open(path) as f:
        lines = f.read().splitlines()
    count = next(int(line.split()[-1]) for line in lines if line.startswith("element vertex"))
    start = lines.index("end_header") + 1
    return np.array([[float(v) for v in line.split()] for line in lines[start:start + count]]
                    ).reshape(-1, 3)


def _finger_of(bone: tuple[int, int]) -> int:
    return (max(bone) - 1) // 4


REFERENCE_COLOUR = "#ff00ff"   # ground-truth keypoints on the overlay, when given


def overlay_figure(image: np.ndarray, prediction: Prediction, title: str = "",
                   reference_2d: np.ndarray | None = None) -> Any:
    """The overlay as a Matplotlib figure (close it with ``matplotlib.pyplot.close``).

    Left panel, in image pixels (pixel centres at integers): the image, the predicted 2-D
    skeleton, the box (yellow), the region the model saw (cyan, dashed:
    ``geometry.crop_outline``, the view-corrected crop) and, when given, reference keypoints
    ``reference_2d`` [J, 2] (e.g. projected ground truth) as ``REFERENCE_COLOUR`` crosses.
    Right panel: the camera-frame pose (bone units) from a fixed viewpoint (``VIEW_ELEVATION``,
    ``VIEW_AZIMUTH``, y axis pointing down as in the image).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(8, 4), dpi=80)
    ax = figure.add_subplot(1, 2, 1)
    ax.imshow(image)
    uv = np.asarray(prediction.keypoints_2d)
    for bone in skeleton.BONES:
        colour = FINGER_COLOURS[_finger_of(bone)]
        ax.plot(uv[list(bone), 0], uv[list(bone), 1], "-", color=colour, lw=2)
    ax.plot(uv[:, 0], uv[:, 1], "o", color="white", ms=3, mec="black", mew=0.5)
    if reference_2d is not None:
        reference = np.asarray(reference_2d, np.float64).reshape(-1, 2)
        ax.plot(reference[:, 0], reference[:, 1], "x", color=REFERENCE_COLOUR, ms=5, mew=1.5)
    x0, y0, x1, y1 = prediction.crop.box
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1))
    ax.add_patch(plt.Polygon(geometry.crop_outline(prediction.crop), closed=True, fill=False,
                             ec="cyan", lw=1, ls="--"))
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.set_title(f"2-D ({prediction.keypoints_2d_source})", fontsize=9)
    ax.axis("off")
    ax3 = figure.add_subplot(1, 2, 2, projection="3d")
    pose = np.asarray(prediction.pose_3d)
    for bone in skeleton.BONES:
        p = pose[list(bone)]
        ax3.plot(p[:, 0], p[:, 1], p[:, 2], color=FINGER_COLOURS[_finger_of(bone)], lw=2)
    if prediction.cloud is not None:
        c = np.asarray(prediction.cloud)
        ax3.scatter(c[:, 0], c[:, 1], c[:, 2], s=1, c="grey", alpha=0.4)
    radius = max(float(np.max(np.abs(pose))), 1e-3)
    for setter in (ax3.set_xlim, ax3.set_ylim, ax3.set_zlim):
        setter(-radius, radius)
    ax3.invert_yaxis()
    ax3.view_init(elev=VIEW_ELEVATION, azim=VIEW_AZIMUTH)
    for axis, label in ((ax3.xaxis, "x"), (ax3.yaxis, "y"), (ax3.zaxis, "z")):
        axis.set_ticklabels([])
        axis.set_label_text(label)
    ax3.set_title(f"3-D, camera frame (±{radius:.2g} bone units)", fontsize=9, pad=14)
    if title:
        figure.suptitle(title, fontsize=9)
    # Fixed margins: tight_layout would render the figure once more just to measure it.
    figure.subplots_adjust(left=0.01, right=0.97, bottom=0.02, top=0.88, wspace=0.05)
    return figure


def write_overlay(image: np.ndarray, prediction: Prediction, path: str, title: str = "",
                  reference_2d: np.ndarray | None = None) -> None:
    """Saves :func:`overlay_figure` as a PNG marked ``Software: OVERLAY_SOFTWARE``."""
    import matplotlib.pyplot as plt

    figure = overlay_figure(image, prediction, title, reference_2d)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        figure.savefig(path, metadata={"Software": OVERLAY_SOFTWARE})
    finally:
        plt.close(figure)


def _is_prediction_record(path: str) -> bool:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and str(record.get("schema", "")).startswith(
        "handvae.prediction/")


def written_by_predict(path: str) -> bool:
    """Whether the existing file ``path`` is one that ``experiments.predict`` wrote.

    A ``.json`` holding a ``handvae.prediction/*`` record, a ``.ply`` with :data:`PLY_COMMENT`,
    a ``.png`` whose ``Software`` text is :data:`OVERLAY_SOFTWARE`, or an older overlay (drawn
    by Matplotlib, before the mark) beside its prediction record. Anything else, links and
    folders included, is the user's.
    """
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".json":
        return _is_prediction_record(path)
    if suffix == ".ply":
        try:
            with open(path, errors="replace") as f:
                head = [f.readline().rstrip("\n") for _ in range(3)]
        except OSError:
            return False
        return head[0] == "ply" and PLY_COMMENT in head
    if suffix == ".png":
        from PIL import Image

        try:
            with Image.open(path) as image:
                software = str(image.info.get("Software", ""))
        except (OSError, SyntaxError, ValueError):
            return False
        return software == OVERLAY_SOFTWARE or (
            software.startswith("Matplotlib")
            and _is_prediction_record(os.path.splitext(path)[0] + ".json"))
    return False


def blocking_file(path: str) -> str | None:
    """``path`` or the nearest path above it that exists and is not a folder, else None.

    A folder can be made at ``path`` only when this is None.
    """
    current = os.path.abspath(path)
    while True:
        if os.path.lexists(current) and not os.path.isdir(current):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
