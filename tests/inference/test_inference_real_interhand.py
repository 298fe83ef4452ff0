"""predict on four real InterHand2.6M photographs (../shared/real_samples/interhand2.6m;
skipped in a user's clone) with their true cameras (world → camera → pixels) and boxes: the
projected ground truth, the crop and the overlay agree."""

import json
import pathlib

import matplotlib
import numpy as np
import pytest

from experiments import predict
from handvae.inference import geometry, images, outputs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)

REPO = pathlib.Path(__file__).resolve().parents[2]
CANDIDATES = (REPO.parent / "shared", pathlib.Path("/work/shared"))
SAMPLES = next((p / "real_samples" / "interhand2.6m" for p in CANDIDATES
                if (p / "real_samples" / "interhand2.6m" / "test_interhand2.6m_data.json")
                .exists()), None)
pytestmark = pytest.mark.skipif(SAMPLES is None,
                                reason="../shared/real_samples/interhand2.6m is absent")
# InterHand's joints per hand: thumb tip … base, index, middle, ring, pinky, wrist last; the
# right hand is 0–20, the left 21–41. RHD's order: the wrist, then each finger tip → base.
TO_RHD = np.array([20, *range(20)])
HAND_OFFSET = {"right": 0, "left": 21}


def _load(name):
    return json.loads((SAMPLES / f"test_interhand2.6m_{name}.json").read_text())


def _hands():
    """One dict per hand whose 21 joints are all valid.

    Keys: path, side, K [3, 3] (pixels), camera [21, 3] (camera frame, millimetres, RHD order),
    uv [21, 2] (pixels, projected), box (x0, y0, x1, y1): the annotated box for a one-hand
    frame, the tight box of the projected joints for a two-hand frame (whose annotated box
    holds both hands), and annotated_box.
    """
    data, cameras, joints = _load("data"), _load("camera"), _load("joint_3d")
    annotations = {a["image_id"]: a for a in data["annotations"]}
    for image in data["images"]:
        annotation = annotations[image["id"]]
        camera = cameras[str(image["capture"])]
        cid = image["camera"]
        rotation, position = np.array(camera["camrot"][cid]), np.array(camera["campos"][cid])
        (fx, fy), (cx, cy) = camera["focal"][cid], camera["princpt"][cid]
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        world = np.array(joints[str(image["capture"])][str(image["frame_idx"])]["world_coord"])
        in_camera = (world - position) @ rotation.T        # x_cam = R (x_world − campos)
        uvw = in_camera @ K.T
        uv = uvw[:, :2] / uvw[:, 2:]
        valid = np.asarray(annotation["joint_valid"], bool).reshape(42)
        x, y, w, h = annotation["bbox"]
        annotated = (x, y, x + w, y + h)
        for side, offset in HAND_OFFSET.items():
            index = offset + TO_RHD
            if not valid[index].all():
                continue
            hand_uv = uv[index]
            box = (annotated if annotation["hand_type"] == side
                   else (*hand_uv.min(0), *hand_uv.max(0)))
            yield {"path": SAMPLES / image["file_name"], "side": side, "K": K,
                   "camera": in_camera[index], "uv": hand_uv, "box": tuple(map(float, box)),
                   "annotated_box": annotated}


def _to_crop_pixels(uv, crop):
    xyw = np.concatenate([uv, np.ones((len(uv), 1))], 1) @ np.linalg.inv(
        np.asarray(crop.crop_to_image, np.float64)).T
    return xyw[:, :2] / xyw[:, 2:]


def test_the_samples_are_as_their_readme_states():
    hands = list(_hands())
    assert len(hands) == 6   # two one-hand frames, two frames with both hands
    for hand in hands:
        depth = hand["camera"][:, 2] / 1000.0
        assert np.all((0.9 < depth) & (depth < 1.2)), hand["path"]
        x0, y0, x1, y1 = hand["annotated_box"]
        u, v = hand["uv"].T
        assert np.all((u >= x0) & (u <= x1) & (v >= y0) & (v <= y1)), hand["path"]


def test_projected_ground_truth_the_crop_and_the_overlay_agree(tiny_predictor):
    size = tiny_predictor.image_size
    for hand in _hands():
        name = f"{hand['path'].name} ({hand['side']})"
        result = tiny_predictor(str(hand["path"]), box=hand["box"], K=hand["K"],
                                hand_side=hand["side"])
        crop = result.crop
        assert result.warnings == () and crop.hand_side == hand["side"]
        # Image route: the projected joints through the crop's homography land inside the
        # tight box's share (1 / CROP_MARGIN) of the crop, around its centre.
        in_crop = _to_crop_pixels(hand["uv"], crop)
        half_box = size / (2 * 1.3)
        assert np.all(np.abs(in_crop - (size - 1) / 2) <= half_box + 0.05 * size), name
        # Camera route: the 3-D joints into the crop frame (x_crop = x_cam Mᵀ, mirrored for a
        # left hand) and through the crop's own intrinsics give the same crop pixels.
        in_frame = hand["camera"] @ np.asarray(crop.crop_to_camera, np.float64).T
        uvw = in_frame @ np.asarray(crop.crop_intrinsics, np.float64).T
        np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], in_crop, atol=0.02, err_msg=name)
        # Overlay: in the drawn panel the joints fall inside the box and the crop outline, and
        # the reference crosses are drawn where the joints project.
        image, _ = images.read_image(str(hand["path"]))
        figure = outputs.overlay_figure(image, result, reference_2d=hand["uv"])
        try:
            figure.canvas.draw()
            pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
            ax = figure.axes[0]
            at = ax.transData.transform(hand["uv"])
            height, width = image.shape[:2]
            (drawn,) = ax.images    # the photo is drawn in image pixels
            np.testing.assert_allclose(drawn.get_extent(), [-0.5, width - 0.5, height - 0.5,
                                                            -0.5])
            box_patch, outline_patch = ax.patches
            (x0, y0), (x1, y1) = box_patch.get_bbox().get_points()
            u, v = hand["uv"].T
            assert np.all((u >= x0 - 1) & (u <= x1 + 1) & (v >= y0 - 1) & (v <= y1 + 1)), name
            np.testing.assert_allclose(outline_patch.get_xy()[:4],
                                       geometry.crop_outline(crop), atol=1e-6)
            assert matplotlib.path.Path(outline_patch.get_xy()).contains_points(
                hand["uv"]).all(), name
            rows = np.round(pixels.shape[0] - at[:, 1]).astype(int)
            cols = np.round(at[:, 0]).astype(int)
            magenta = [np.any(np.all(np.abs(pixels[r - 1:r + 2, c - 1:c + 2]
                                            - [255, 0, 255]) < 60, axis=-1))
                       for r, c in zip(rows, cols)]
            assert np.mean(magenta) >= 0.8, (name, magenta)
        finally:
            plt.close(figure)


def test_predict_cli_on_the_photographs_with_their_cameras(tmp_path, tiny_workdir, capsys):
    """``python -m experiments.predict`` with ``--boxes`` holding each photo's K and box."""
    chosen = {}
    for hand in _hands():   # one hand per photograph: the right one of a two-hand frame
        chosen.setdefault(hand["path"].name, hand)
    boxes = {name: {"box": list(hand["box"]), "K": hand["K"].tolist(),
                    "hand_side": hand["side"]} for name, hand in chosen.items()}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    code = predict.main(["--workdir", tiny_workdir, "--input", str(SAMPLES), "--boxes",
                         str(tmp_path / "boxes.json"), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and "predicted 4 of 4 images (0 failed)" in captured.out, captured
    assert "WARNING" not in captured.err
    for name, hand in chosen.items():
        stem = out / pathlib.Path(name).stem
        record = json.loads(stem.with_suffix(".json").read_text())
        assert record["intrinsics_source"] == "given" and record["hand_side"] == hand["side"]
        np.testing.assert_allclose(record["intrinsics"], hand["K"])
        np.testing.assert_allclose(record["box"], hand["box"])
        assert record["image_size"] == list(images.read_image(str(hand["path"]))[0].shape[:2])
        # the projected joints lie inside the crop outline the record reports
        outline = matplotlib.path.Path(np.asarray(record["crop"]["outline"]))
        assert outline.contains_points(hand["uv"]).all(), name
        assert outputs.written_by_predict(str(stem.with_suffix(".png")))
