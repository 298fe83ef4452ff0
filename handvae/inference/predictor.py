"""Predict hand poses on user images with a trained work directory.

Example::

    from handvae.inference import Predictor
    predictor = Predictor.from_workdir("workdirs/demo_s4", which="best")
    result = predictor(image_or_path, box=(x0, y0, x1, y1), focal=600.0)
    result.pose_3d          # [21, 3] camera frame, root-relative, units of the reference bone
    result.keypoints_2d     # [21, 2] image pixels

Whatever the strategy, the pose is the RGB encoder's mean decoded by the pose decoder
(``handvae.models.vae.predict_pose``); heat maps and clouds are decoded from the same mean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from handvae.inference import geometry, images
from handvae.models import vae
from handvae.models.registry import STRATEGIES, get_strategy
from handvae.ops import skeleton
from handvae.training import checkpoint as checkpoint_lib

KEYPOINT_SOURCES = ("auto", "heatmaps", "projection")
OUTPUT_KEYS = ("pose_3d", "keypoints_2d", "latent_mean", "cloud")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What inference reads from a run's config (one place: fields may move between groups)."""

    strategy: str
    image_size: int


def settings_from_config(config: Any) -> Settings:
    """The config fields inference needs; the single point of access to a run's config."""
    return Settings(strategy=str(config.model.strategy), image_size=int(config.model.image_size))


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One hand's prediction.

    Attributes:
      pose_3d: [21, 3] root-relative pose in the camera frame, in units of the reference bone
        (middle MCP→PIP), RHD joint order (``skeleton.JOINT_NAMES``). It is the pose decoder's
        output as evaluated (trained to put the middle MCP at 0; not forced there).
      pose_3d_m: [21, 3] the same in metres when a hand scale was given, else None.
      keypoints_2d: [21, 2] (u, v) image pixels (pixel centres at integers).
      keypoints_2d_source: "heatmaps" (heat-map decoder) or "projection" (3-D pose projected
        into the box at an assumed depth, see ``geometry.projected_keypoints``).
      latent_mean: [D] mean of q(z | x_R).
      cloud: [N, 3] decoded hand-surface cloud, camera frame, root-relative, bone units
        (strategies with a cloud decoder), else None.
      cloud_m: the cloud in metres when a hand scale was given.
      crop: the crop and its geometry (box, square, K, side, matrices).
      conversion: how the image was converted to 8-bit RGB, or None.
      warnings: why the prediction may be poor (e.g. a box mostly outside the image), one
        line each naming the image (``crop.warnings``).
    """

    pose_3d: np.ndarray
    pose_3d_m: np.ndarray | None
    keypoints_2d: np.ndarray
    keypoints_2d_source: str
    latent_mean: np.ndarray
    cloud: np.ndarray | None
    cloud_m: np.ndarray | None
    crop: geometry.Crop
    conversion: str | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.crop.warnings


def make_predict_fn(model: vae.HandVAE, variables: Any, *, keypoints: str = "auto"
                    ) -> Callable[..., dict[str, jax.Array]]:
    """The pure batched predict function (what is jitted and what ``jax.export`` serialises).

    Args:
      model: the HandVAE of the run.
      variables: ``{"params", "batch_stats"}`` (closed over: they become constants).
      keypoints: "auto" (heat maps when the strategy decodes them), "heatmaps" or "projection".

    Returns:
      ``f(rgb [B, S, S, 3], crop_intrinsics [B, 3, 3], crop_to_camera [B, 3, 3],
      crop_to_image [B, 3, 3]) → {"pose_3d" [B, 21, 3], "keypoints_2d" [B, 21, 2],
      "latent_mean" [B, D], "cloud" [B, N, 3] (cloud strategies only)}`` with the meanings of
      :class:`Prediction`.
    """
    spec = get_strategy(model.strategy)
    if keypoints not in KEYPOINT_SOURCES:
        raise ValueError(f"keypoints must be one of {KEYPOINT_SOURCES}, got {keypoints!r}")
    has_heatmaps = "heatmaps" in spec.targets
    if keypoints == "heatmaps" and not has_heatmaps:
        raise ValueError(f"strategy {model.strategy} has no heat-map decoder; use "
                         "keypoints='projection' or 'auto'")
    use_heatmaps = has_heatmaps and keypoints != "projection"
    size = model.image_size

    def decode(module: vae.HandVAE, rgb: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        mu, _ = module.encode_rgb(rgb, train=False)
        return mu, module.decode(mu, train=False)

    def predict(rgb, crop_intrinsics, crop_to_camera, crop_to_image):
        mu, decoded = model.apply(variables, rgb, method=decode)
        pose = decoded["pose"]
        if use_heatmaps:
            uv = geometry.heatmap_keypoints(decoded["heatmaps"], size)
        else:
            uv = geometry.projected_keypoints(pose, crop_intrinsics, size)
        out = {"pose_3d": jnp.einsum("bjk,bkl->bjl", pose, crop_to_camera),
               "keypoints_2d": geometry.crop_to_image_points(uv, crop_to_image),
               "latent_mean": mu}
        if spec.decodes_cloud:
            out["cloud"] = jnp.einsum("bnk,bkl->bnl", decoded["cloud"], crop_to_camera)
        return out

    return predict


_READ_ONLY_NOTICE = "Given directory is read only=%s"


class _DropReadOnlyNotice(logging.Filter):
    """Drops orbax's notice that a manager opened with ``read_only=True`` is read only.

    ``orbax.checkpoint.CheckpointManager.__init__`` logs it (absl, WARNING) for every read-only
    manager; restoring for inference asks for read-only on purpose, so it is noise. Only that
    exact message is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _READ_ONLY_NOTICE


@contextlib.contextmanager
def _quiet_read_only_notice() -> Iterator[None]:
    absl_logger = logging.getLogger("absl")
    notice_filter = _DropReadOnlyNotice()
    absl_logger.addFilter(notice_filter)
    try:
        yield
    finally:
        absl_logger.removeFilter(notice_filter)


def _restore(workdir: str, which: str, step: int | None):
    """``restore_with_origin`` with messages for a checkpoint of another strategy."""
    try:
        with _quiet_read_only_notice():
            return checkpoint_lib.restore_with_origin(workdir, which, step=step)
    except FileNotFoundError:
        raise
    except Exception as error:  # orbax reports a tree mismatch in several exception types
        config = checkpoint_lib.read_config(workdir)
        strategy = settings_from_config(config).strategy
        raise ValueError(
            f"{workdir}: the checkpoint does not match config.model.strategy={strategy!r} "
            f"in {workdir}/{checkpoint_lib.CONFIG_FILE} (a checkpoint of another strategy or "
            f"model size? known strategies: {', '.join(STRATEGIES)}); restoring failed with "
            f"{type(error).__name__}: {str(error)[:300]}") from error


class Predictor:
    """A trained model wrapped for images: crop, view correction, batching, geometry.

    Args:
      model: the HandVAE.
      variables: its ``{"params", "batch_stats"}``.
      batch_size: images per jitted call (the last batch is padded, so one compile).
      keypoints: "auto", "heatmaps" or "projection" (see :func:`make_predict_fn`).
    """

    def __init__(self, model: vae.HandVAE, variables: Any, *, batch_size: int = 16,
                 keypoints: str = "auto", source: str | None = None):
        self.model = model
        self.variables = variables
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        spec = get_strategy(model.strategy)
        self.strategy = model.strategy
        self.image_size = int(model.image_size)
        self.keypoints_2d_source = ("heatmaps" if "heatmaps" in spec.targets
                                    and keypoints != "projection" else "projection")
        self.decodes_cloud = spec.decodes_cloud
        self.source = source
        self._predict = jax.jit(make_predict_fn(model, variables, keypoints=keypoints))

    @classmethod
    def from_workdir(cls, workdir: str, which: str = "best", *, step: int | None = None,
                     batch_size: int = 16, keypoints: str = "auto") -> Predictor:
        """Restores a training work directory (``checkpoint.restore_with_origin``).

        ``source`` (the JSON's and the export metadata's ``checkpoint``) names the checkpoint
        really read, e.g. ``"DIR (latest, step 2)"`` after a fall back from "best".

        Raises:
          FileNotFoundError: no config.json or no checkpoint (the message names the folder).
          ValueError: the checkpoint does not fit ``config.model.strategy`` (names the field).
        """
        config, model, variables, origin = _restore(workdir, which, step)
        settings = settings_from_config(config)
        if settings.strategy != model.strategy or settings.image_size != model.image_size:
            raise ValueError(f"{workdir}: config.model gives {settings}, the model "
                             f"{model.strategy}/{model.image_size}")
        return cls(model, variables, batch_size=batch_size, keypoints=keypoints,
                   source=f"{workdir} ({origin['which']}, step {origin['checkpoint_step']})")

    # -- preparation ---------------------------------------------------------------------------
    def prepare(self, image: Any, box: Sequence[float] | None = None, *,
                K: np.ndarray | None = None, focal: float | None = None,
                hand_side: str = "right", name: str | None = None
                ) -> tuple[geometry.Crop, str | None]:
        """Reads/converts one image and makes its crop (raises ``ValueError`` naming it)."""
        if isinstance(image, str) or hasattr(image, "__fspath__"):
            name = name or str(image)
            array, conversion = images.read_image(str(image))
        else:
            name = name or "image"
            array, conversion = images.to_rgb_uint8(image, name)
        height, width = array.shape[:2]
        if K is None:
            K = geometry.default_intrinsics(height, width, focal, name=name)
        crop = geometry.prepare_crop(array, box, K, self.image_size, hand_side=hand_side,
                                     name=name)
        return crop, conversion

    # -- prediction ----------------------------------------------------------------------------
    def predict_crops(self, crops: Sequence[geometry.Crop]) -> dict[str, np.ndarray]:
        """Runs the jitted function on prepared crops in batches of ``batch_size``.

        Returns:
          The outputs of :func:`make_predict_fn` stacked over all crops (numpy).
        """
        if not crops:
            return {}
        fields = ("rgb", "crop_intrinsics", "crop_to_camera", "crop_to_image")
        stacked = {f: np.stack([getattr(c, f) for c in crops]).astype(np.float32)
                   for f in fields}
        outputs: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(crops), self.batch_size):
            chunk = {f: v[start:start + self.batch_size] for f, v in stacked.items()}
            count = len(chunk["rgb"])
            if count < self.batch_size:  # pad with copies of the first row: one compile
                chunk = {f: np.concatenate([v, np.repeat(v[:1], self.batch_size - count, 0)])
                         for f, v in chunk.items()}
            result = jax.device_get(self._predict(*(chunk[f] for f in fields)))
            for key, value in result.items():
                outputs.setdefault(key, []).append(np.asarray(value)[:count])
        return {key: np.concatenate(parts) for key, parts in outputs.items()}

    def _to_prediction(self, outputs: dict[str, np.ndarray], i: int, crop: geometry.Crop,
                       conversion: str | None, hand_scale: float | None) -> Prediction:
        cloud = outputs["cloud"][i] if "cloud" in outputs else None
        scale = None if hand_scale is None else float(hand_scale)
        return Prediction(
            pose_3d=outputs["pose_3d"][i], keypoints_2d=outputs["keypoints_2d"][i],
            pose_3d_m=None if scale is None else outputs["pose_3d"][i] * scale,
            keypoints_2d_source=self.keypoints_2d_source,
            latent_mean=outputs["latent_mean"][i], cloud=cloud,
            cloud_m=None if scale is None or cloud is None else cloud * scale,
            crop=crop, conversion=conversion)

    def predict_many(self, items: Sequence[dict[str, Any]]) -> list[Prediction | Exception]:
        """Predicts many hands; one bad input never stops the others.

        Args:
          items: dicts with ``image`` (array or path) and optional ``box``, ``K``, ``focal``,
            ``hand_side``, ``hand_scale`` (metres), ``name``.

        Returns:
          One entry per item: a :class:`Prediction`, or the exception (``ValueError`` naming
          the file or field) that stopped that item.
        """
        results: list[Prediction | Exception] = [None] * len(items)  # type: ignore[list-item]
        good, crops, conversions = [], [], []
        for i, item in enumerate(items):
            unknown = set(item) - {"image", "box", "K", "focal", "hand_side", "hand_scale",
                                   "name"}
            try:
                if unknown:
                    raise ValueError(f"{item.get('name', i)}: unknown fields {sorted(unknown)}")
                crop, conversion = self.prepare(
                    item["image"], item.get("box"), K=item.get("K"), focal=item.get("focal"),
                    hand_side=item.get("hand_side") or "right", name=item.get("name"))
                _check_hand_scale(item.get("hand_scale"), item.get("name") or f"item {i}")
            except (ValueError, OSError) as error:
                results[i] = error
                continue
            good.append(i)
            crops.append(crop)
            conversions.append(conversion)
        outputs = self.predict_crops(crops)
        for k, (i, crop, conversion) in enumerate(zip(good, crops, conversions)):
            results[i] = self._to_prediction(outputs, k, crop, conversion,
                                             items[i].get("hand_scale"))
        return results

    def __call__(self, image: Any, box: Sequence[float] | None = None, *,
                 K: np.ndarray | None = None, focal: float | None = None,
                 hand_side: str = "right", hand_scale: float | None = None) -> Prediction:
        """Predicts one hand.

        Args:
          image: [H, W(, C)] array (uint8, uint16, another integer dtype or float in [0, 1]:
            ``images.to_rgb_uint8``) or a PNG/JPEG path (EXIF orientation applied).
          box: tight hand box (x0, y0, x1, y1) in pixels; None takes the whole image.
          K: [3, 3] intrinsics; default from ``focal`` or a 55° field of view
            (``geometry.default_intrinsics``).
          focal: focal length in pixels when K is unknown.
          hand_side: "right" or "left".
          hand_scale: reference-bone length (middle MCP→PIP) in metres, for metric outputs.

        Raises:
          ValueError: bad image, box, intrinsics or side (the message names the input).

        Warns:
          UserWarning: each of ``Prediction.warnings`` (e.g. a box mostly outside the image).
        """
        result = self.predict_many([{"image": image, "box": box, "K": K, "focal": focal,
                                     "hand_side": hand_side, "hand_scale": hand_scale}])[0]
        if isinstance(result, Exception):
            raise result
        for message in result.warnings:
            warnings.warn(message, stacklevel=2)
        return result


def _check_hand_scale(scale: Any, name: str) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``scale`` is None or a positive length."""
    if scale is None:
        return
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}: hand_scale must be a positive length in metres, got "
                         f"{scale!r}")


JOINT_NAMES = skeleton.JOINT_NAMES
__all__ = ["JOINT_NAMES", "Prediction", "Predictor", "Settings", "make_predict_fn",
           "settings_from_config"]
