"""Inference on user images: the Predictor API, crops, outputs, and ``jax.export``.

Sits after ``handvae.training`` in the layer order (it restores checkpoints)::

    from handvae.inference import Predictor
    result = Predictor.from_workdir("workdirs/demo_s4")("hand.jpg", box=(40, 30, 200, 220))

Design notes and measurements (moved from WORKSPACE.md, issue 15)

`handvae/inference/` (after `training`: it restores checkpoints; never imports `experiments` or
`data_prep`): `Predictor.from_workdir(workdir, which)` → `predictor(image, box, K=, focal=,
hand_side=, hand_scale=)` / `predict_many([...])` → `Prediction`; `experiments/predict.py`
and `experiments/export.py` are the launchers (README, "Predict on your own images").

- **One path for crops.** `handvae/ops/view_crop.py` holds `crop_box`, `crop_intrinsics`,
  `crop_homography`, `CROP_MARGIN`, `MIN_CROP_SIDE` (moved from `data_prep/features.py`, which
  imports them): inference crops exactly as the builders do (box → square of side 1.3·max(w, h),
  view correction, 256² stored crop, left hands mirrored) and then as the pipeline does
  (`augment` with `IDENTITY` = the resize, the same normalisation). A test checks the crop is
  bit-identical to `process_frame` + `example_to_features` and the geometry maps the builder's
  labels back to the raw ones (`tests/inference/test_inference_geometry.py`).
- **Geometry as three matrices per crop** (`crop_intrinsics`, `crop_to_camera` = diag(±1,1,1)·R,
  `crop_to_image` = K·Rᵀ·K_S⁻¹·unmirror), applied inside the one jitted function, so the
  exported model does the un-mirroring and un-rotation too.
- **Outputs.** The pose is the pose decoder's output on the RGB encoder's mean (as evaluated),
  rotated to the camera frame: root-relative in units of the middle MCP→PIP bone (metres
  only with a given hand scale; the paper and hand3d evaluate with the known root and scale,
  a photo has neither). 2-D keypoints: the heat-map decoder's arg-max refined by a 3×3
  centroid (paper silent on decoding heat maps at test time); strategies without heat maps
  project the 3-D pose assuming the hand fills the tight box (root depth f_S·extent·1.3/S
  bone units, centred on the crop axis) — an assumption, documented in `geometry.py`.
- **Unknown intrinsics:** a 55° field of view across the longer side (RHD's cameras: 55–63°
  across 320 px, STB's 55.5°), principal point at the image centre; `--focal` overrides.
- **Export:** `jax.export` with weights as constants and a symbolic batch; serialisation needs
  `flatbuffers` (added to setup.cfg); a metadata JSON sits beside the file.
- **Measured** (2026-11-25, shared 2-core machine, load average 14–17, the 2-step tiny R2HP
  checkpoint of the tests, 32-px crops; no `make demo` checkpoint was available and the load
  ruled out training one): `python -m experiments.predict ... --rhd-annotations` on 256
  synthetic test frames (`data_prep.synthetic --num-eval 256`): 17.9 images/s with
  `--no-overlays` (14.3 s; 4.8 s CPU), 1.36 images/s with overlays (188.5 s; 48 s CPU: the
  matplotlib overlay, ~0.6 s per image under that load, dominates). Export: tiny model 0.26 MB,
  the demo S4 shapes (251k parameters) 1.00 MB; loading = `import jax` 1.9 s + deserialise
  0.01 s + first call (compile) 3.9–4.6 s, then 6–15 ms per call of 4 crops.
- **What a 2-step model does on real RHD frames** (`../shared/real_samples/rhd`, true K,
  boxes, sides): a near-constant pose ±0.1–0.2 bone units across (real hands span 2–4), heat-map
  keypoints clustered in the crop, 23–62 px mean 2-D error, 57.8 mm mean EPE by the hand3d
  metrics: the path works end to end; the numbers say nothing about a trained model.
- **Safety of predict/export (issue 24).** Ownership by content, not by folder: each output
  carries a mark (JSON `schema`, PLY comment, overlay PNG `Software` text; an older,
  unmarked Matplotlib overlay counts when its record sits beside it), and predict replaces or
  removes only marked files of the stems it predicts, refusing any other file at those names
  (`outputs.written_by_predict`); a manifest file was not used because it goes stale when a
  user moves files. `--out` equal to an input image's folder is refused outright (a subfolder
  is fine: folders are not listed recursively). Integer arrays: `uint8`/`uint16` by dtype,
  wider dtypes by value (≤ 255 → 8-bit), a 16-bit PNG always 16-bit (`bit_depth=16`). Images
  under 16 px a side are refused; a box with under half its area inside the image is warned
  (`Crop.warnings`, the JSON's `warnings`, a `UserWarning` from `Predictor.__call__`).
  orbax's "Given directory is read only" is logged by every read-only `CheckpointManager`; it
  is dropped by an exact-message filter on the `absl` logger around the restore in
  `predictor._restore` (evaluate, which also restores read-only, still prints it: its restore
  lives in `handvae/training/checkpoint.py`).
- **Real InterHand2.6M photographs** (`../shared/real_samples/interhand2.6m`, test
  `tests/inference/test_inference_real_interhand.py`): K from `focal`/`princpt`, joints by
  x_cam = camrot·(x_world − campos); every hand's joints project inside its annotated box and
  the model crop, the crop's homography and its 3-D route (`crop_to_camera`, `crop_intrinsics`)
  give the same crop pixels within 0.02 px, and the overlay (which now draws the view-corrected
  crop outline, also in the JSON) puts the ground truth where it projects. Two frames hold two
  hands with one box around both; each hand is then cropped by the box of its projected joints.
"""

from handvae.inference.geometry import DEFAULT_FOV_DEGREES, Crop, default_intrinsics, prepare_crop
from handvae.inference.images import ImageError, list_images, read_image, to_rgb_uint8
from handvae.inference.predictor import (
                                         Prediction,
                                         Predictor,
                                         Settings,
                                         make_predict_fn,
                                         settings_from_config,
)

__all__ = ["DEFAULT_FOV_DEGREES", "Crop", "ImageError", "Prediction", "Predictor", "Settings",
           "default_intrinsics", "list_images", "make_predict_fn", "prepare_crop", "read_image",
           "settings_from_config", "to_rgb_uint8"]
