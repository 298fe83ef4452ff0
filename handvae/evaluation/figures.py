"""Paper-style figures: reconstructions from z_rgb (Fig. 3) and latent interpolation (Figs. 1, 4).

Plotting functions take arrays in the batch contract's frame (view-corrected camera frame,
root-relative, scale-normalised; x right, y down, z away from the camera) and draw them as
seen from the camera, so the pose lines up with the RGB crop. Output is PNG via matplotlib's
Agg backend. The model-driven helpers (:func:`write_model_figures`) import
``handvae.models`` when called, so the plotting functions stay usable on their own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from handvae.data import spec  # noqa: E402
from handvae.ops import skeleton  # noqa: E402

# One colour per finger (thumb … little), as in hand3d's stick figures (blue → red).
FINGER_COLORS = ("#1f3fbf", "#0f9fdf", "#2fbf4f", "#efaf1f", "#df3f1f")


def denormalize_rgb(rgb: Any) -> np.ndarray:
    """Undoes the pipeline's per-channel normalisation for display.

    Args:
      rgb: [..., S, S, 3] normalised crop (``(x/255 − RGB_MEAN) / RGB_STD``).

    Returns:
      [..., S, S, 3] float32 image in [0, 1].
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb must end in 3 channels, got shape {rgb.shape}")
    return np.clip(rgb * spec.RGB_STD + spec.RGB_MEAN, 0.0, 1.0)


def _bone_color(child: int) -> str:
    return FINGER_COLORS[(child - 1) // 4] if child > 0 else "k"


def _camera_view(ax: Any) -> None:
    # Look along +z from the camera with y pointing down, like the image.
    ax.view_init(elev=-90.0, azim=-90.0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_zticks([])


def _equal_limits(ax: Any, points: np.ndarray) -> None:
    centre = 0.5 * (points.max(axis=0) + points.min(axis=0))
    radius = 0.5 * float(np.max(points.max(axis=0) - points.min(axis=0))) + 1e-6
    ax.set_xlim(centre[0] - radius, centre[0] + radius)
    ax.set_ylim(centre[1] - radius, centre[1] + radius)
    ax.set_zlim(centre[2] - radius, centre[2] + radius)


def plot_pose_3d(ax: Any, pose: Any, *, color: str | None = None, linewidth: float = 1.5,
                 label: str | None = None) -> None:
    """Draws a 21-joint hand (RHD order) as a stick figure on a 3-D axes.

    Args:
      ax: a matplotlib ``Axes3D``.
      pose: [21, 3] keypoints, any unit.
      color: one colour for all bones, or None for per-finger colours.
      linewidth: bone width in points.
      label: legend label (attached to the first bone).
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"pose must be [21, 3], got shape {pose.shape}")
    for i, (parent, child) in enumerate(skeleton.BONES):
        seg = pose[[parent, child]]
        ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=color or _bone_color(child),
                linewidth=linewidth, label=label if i == 0 else None)


def plot_cloud(ax: Any, cloud: Any, *, color: str = "#3f7fbf", size: float = 2.0) -> None:
    """Scatters a point cloud [N, 3] on a 3-D axes, shaded by depth."""
    cloud = np.asarray(cloud, dtype=np.float64)
    if cloud.ndim != 2 or cloud.shape[1] != 3:
        raise ValueError(f"cloud must be [N, 3], got shape {cloud.shape}")
    ax.scatter(cloud[:, 0], cloud[:, 1], cloud[:, 2], s=size, c=color, depthshade=True,
               linewidths=0)


def _save(fig: Any, path: str | os.PathLike, dpi: float | None = None) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


@contextlib.contextmanager
def plot_to(path: str | os.PathLike, figsize: tuple[float, float] = (6, 4.5),
            dpi: float = 120) -> Iterator[Any]:
    """One 2-D axes to draw on; on exit the figure is laid out, written to ``path`` (PNG, its
    folder created) and closed, also when drawing raised (then nothing is written).

    Example::

        with figures.plot_to("curve.png") as ax:
            ax.plot(steps, epe)
    """
    fig, ax = plt.subplots(figsize=figsize)
    try:
        yield ax
    except BaseException:
        plt.close(fig)
        raise
    fig.tight_layout()
    _save(fig, path, dpi)


def reconstruction_figure(rgb: Any, cloud_gt: Any, cloud_rec: Any | None,
                          path: str | os.PathLike, *, pose_gt: Any | None = None,
                          pose_pred: Any | None = None, title: str | None = None) -> None:
    """Fig. 3: per row the RGB crop, the ground-truth cloud and the cloud decoded from z_rgb.

    Args:
      rgb: [K, S, S, 3] normalised crops.
      cloud_gt: [K, N, 3] ground-truth clouds (normalised frame).
      cloud_rec: [K, M, 3] clouds decoded from z_rgb, or None when the model has no cloud
        decoder (the column then shows only the poses).
      path: output PNG path.
      pose_gt: optional [K, 21, 3] ground-truth poses, drawn over the ground-truth cloud.
      pose_pred: optional [K, 21, 3] poses predicted from RGB, drawn over the reconstruction.
      title: optional figure title.
    """
    rgb = np.asarray(rgb)
    cloud_gt = np.asarray(cloud_gt)
    k = rgb.shape[0]
    if cloud_gt.shape[0] != k or (cloud_rec is not None and np.shape(cloud_rec)[0] != k):
        raise ValueError(f"rgb, cloud_gt and cloud_rec need the same K; got {rgb.shape}, "
                         f"{cloud_gt.shape}, {None if cloud_rec is None else np.shape(cloud_rec)}")
    fig = plt.figure(figsize=(7.5, 2.5 * k), dpi=100)
    headers = ("RGB crop", "ground-truth cloud", "decoded from z_rgb")
    for row in range(k):
        ax = fig.add_subplot(k, 3, 3 * row + 1)
        ax.imshow(denormalize_rgb(rgb[row]))
        ax.axis("off")
        ax_gt = fig.add_subplot(k, 3, 3 * row + 2, projection="3d")
        plot_cloud(ax_gt, cloud_gt[row], color="#7f7f7f")
        shown = [cloud_gt[row]]
        if pose_gt is not None:
            plot_pose_3d(ax_gt, np.asarray(pose_gt)[row])
            shown.append(np.asarray(pose_gt)[row])
        ax_rec = fig.add_subplot(k, 3, 3 * row + 3, projection="3d")
        rec_shown = []
        if cloud_rec is not None:
            plot_cloud(ax_rec, np.asarray(cloud_rec)[row], color="#3f7fbf")
            rec_shown.append(np.asarray(cloud_rec)[row])
        if pose_pred is not None:
            plot_pose_3d(ax_rec, np.asarray(pose_pred)[row])
            rec_shown.append(np.asarray(pose_pred)[row])
        # Same limits for both 3-D panels so their sizes compare.
        limits = np.concatenate(shown + rec_shown)
        for a in (ax_gt, ax_rec):
            _equal_limits(a, limits)
            _camera_view(a)
        if row == 0:
            for a, h in zip((ax, ax_gt, ax_rec), headers):
                a.set_title(h, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def interpolation_figure(rgb_pair: Any, poses: Any, clouds: Any | None,
                         path: str | os.PathLike, *, title: str | None = None) -> None:
    """Figs. 1/4: decodings along the straight line between z_rgb of two images.

    Args:
      rgb_pair: [2, S, S, 3] the start and end crops (normalised).
      poses: [T, 21, 3] poses decoded at T evenly spaced latents (T ≥ 2).
      clouds: [T, N, 3] clouds decoded at the same latents, or None.
      path: output PNG path.
      title: optional figure title.
    """
    rgb_pair = np.asarray(rgb_pair)
    poses = np.asarray(poses)
    if rgb_pair.shape[0] != 2:
        raise ValueError(f"rgb_pair must be [2, S, S, 3], got shape {rgb_pair.shape}")
    if poses.ndim != 3 or poses.shape[1:] != (skeleton.NUM_JOINTS, 3) or poses.shape[0] < 2:
        raise ValueError(f"poses must be [T >= 2, 21, 3], got shape {poses.shape}")
    t = poses.shape[0]
    rows = 1 if clouds is None else 2
    fig = plt.figure(figsize=(1.7 * (t + 2), 1.9 * rows + 0.4), dpi=100)
    grid = fig.add_gridspec(rows, t + 2, wspace=0.05, hspace=0.1)
    for col, idx in ((0, 0), (t + 1, 1)):
        ax = fig.add_subplot(grid[:, col])
        ax.imshow(denormalize_rgb(rgb_pair[idx]))
        ax.set_title("start" if idx == 0 else "end", fontsize=8)
        ax.axis("off")
    limits = poses.reshape(-1, 3)
    for i in range(t):
        ax = fig.add_subplot(grid[0, i + 1], projection="3d")
        plot_pose_3d(ax, poses[i], linewidth=1.0)
        _equal_limits(ax, limits)
        _camera_view(ax)
        ax.set_title(f"α={i / (t - 1):.2f}", fontsize=7)
        if clouds is not None:
            axc = fig.add_subplot(grid[1, i + 1], projection="3d")
            plot_cloud(axc, np.asarray(clouds)[i], size=1.0)
            _equal_limits(axc, np.asarray(clouds).reshape(-1, 3))
            _camera_view(axc)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def pose_grid_figure(rgb: Any, pose_gt: Any, pose_pred: Any, path: str | os.PathLike, *,
                     errors_mm: Sequence[float] | None = None) -> None:
    """Qualitative results: RGB crop, and predicted (colour) over ground-truth (grey) pose.

    Args:
      rgb: [K, S, S, 3] normalised crops.
      pose_gt: [K, 21, 3] ground-truth poses.
      pose_pred: [K, 21, 3] poses predicted from RGB.
      path: output PNG path.
      errors_mm: optional [K] mean keypoint error per example, printed as a title.
    """
    rgb, pose_gt, pose_pred = np.asarray(rgb), np.asarray(pose_gt), np.asarray(pose_pred)
    k = rgb.shape[0]
    if pose_gt.shape != (k, 21, 3) or pose_pred.shape != (k, 21, 3):
        raise ValueError(f"pose_gt and pose_pred must be [K={k}, 21, 3], got "
                         f"{pose_gt.shape} and {pose_pred.shape}")
    fig = plt.figure(figsize=(2.2 * k, 4.4), dpi=100)
    for i in range(k):
        ax = fig.add_subplot(2, k, i + 1)
        ax.imshow(denormalize_rgb(rgb[i]))
        ax.axis("off")
        if errors_mm is not None:
            ax.set_title(f"{errors_mm[i]:.1f} mm", fontsize=8)
        ax3 = fig.add_subplot(2, k, k + i + 1, projection="3d")
        plot_pose_3d(ax3, pose_gt[i], color="#9f9f9f", linewidth=2.5)
        plot_pose_3d(ax3, pose_pred[i])
        _equal_limits(ax3, np.concatenate([pose_gt[i], pose_pred[i]]))
        _camera_view(ax3)
    fig.tight_layout()
    _save(fig, path)


def decode_latents(model: Any, variables: Any, z: Any) -> dict[str, np.ndarray | None]:
    """Every decoder of the model on latents z [K, D] (test mode).

    Returns:
      ``{"z": [K, D], "pose": [K, 21, 3], "cloud": [K, N, 3] or None}`` as numpy arrays
      (``cloud`` is None for strategies without a cloud decoder, e.g. S1).
    """
    from handvae.models import vae
    decoded = model.apply(variables, z, train=False, method=vae.HandVAE.decode)
    return {"z": np.asarray(z), "pose": np.asarray(decoded["pose"]),
            "cloud": np.asarray(decoded["cloud"]) if "cloud" in decoded else None}


def write_model_figures(model: Any, variables: Any, examples: dict[str, Any],
                        out_dir: str | os.PathLike, *, name: str,
                        num_interpolation: int = 7) -> list[str]:
    """Writes poses.png, reconstruction.png (Fig. 3) and interpolation.png (Figs. 1/4).

    The poses shown are the evaluator's own predictions (``examples["pred_pose"]``, from
    ``handvae.evaluation.evaluator.evaluate``); the model is run here only for what the
    evaluation does not compute: z_rgb of the K crops (the RGB encoder's mean), the clouds
    decoded from it, and the decodings along the segment between two of them.

    Args:
      model: a ``handvae.models.vae.HandVAE``; variables: ``{"params", "batch_stats"}``.
      examples: ``Evaluation.examples``: ``rgb`` [K, S, S, 3], ``pose`` [K, 21, 3],
        ``pred_pose`` [K, 21, 3], optionally ``cloud`` [K, N, 3] (ground truth) and
        ``errors_mm`` [K] (printed over each crop); K ≥ 1, the interpolation needs K ≥ 2.
      out_dir: output folder.
      name: model label for the titles.
      num_interpolation: latents on the interpolation path.

    Returns:
      Paths written. ``reconstruction.png`` is skipped for strategies without a cloud
      decoder (S1 has none: a pose-only latent space cannot be decoded to a cloud) and when
      the examples carry no ground-truth cloud.
    """
    from handvae.models import registry, vae
    rgb, pose_gt = np.asarray(examples["rgb"]), np.asarray(examples["pose"])
    pose_pred = np.asarray(examples["pred_pose"])
    written = []
    path = os.path.join(out_dir, "poses.png")
    pose_grid_figure(rgb, pose_gt, pose_pred, path, errors_mm=examples.get("errors_mm"))
    written.append(path)
    decodes_cloud = registry.get_strategy(model.strategy).decodes_cloud
    if not (decodes_cloud and "cloud" in examples) and rgb.shape[0] < 2:
        return written
    mu, _ = vae.encode_rgb(model, variables, rgb)
    if decodes_cloud and "cloud" in examples:
        path = os.path.join(out_dir, "reconstruction.png")
        cloud_rec = np.asarray(vae.decode_cloud(model, variables, mu))
        reconstruction_figure(rgb, examples["cloud"], cloud_rec, path, pose_gt=pose_gt,
                              pose_pred=pose_pred,
                              title=f"{name}: point clouds decoded from z_rgb")
        written.append(path)
    if rgb.shape[0] >= 2:
        path_decoded = decode_latents(model, variables,
                                      vae.interpolate_latents(mu[0], mu[1], num_interpolation))
        path = os.path.join(out_dir, "interpolation.png")
        interpolation_figure(rgb[:2], path_decoded["pose"], path_decoded["cloud"], path,
                             title=f"{name}: decoded along z_rgb(start) → z_rgb(end)")
        written.append(path)
    return written
