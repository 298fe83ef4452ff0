"""jax.export of the predict function: polymorphic batch, the README loader with jax + numpy
only, outputs equal to the Python API's to 1e-5."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from handvae.inference import export as export_lib
from handvae.inference import geometry

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
# Everything but jax and numpy is hidden from the loader.
BLOCKER = textwrap.dedent("""
    import sys
    class _Block:
        HIDDEN = ("handvae", "flax", "optax", "orbax", "PIL", "tensorflow_datasets",
                  "ml_collections", "matplotlib", "experiments", "data_prep")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.HIDDEN:
                raise ImportError(f"{name} is hidden: the loader must need only jax and numpy")
    sys.meta_path.insert(0, _Block())
""")


def _loader_snippet() -> str:
    with open(README) as f:
        text = f.read()
    match = re.search(r"<!-- exported-loader -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "README.md lost its exported-loader block"
    return match.group(1)


@pytest.fixture(scope="module")
def exported_file(tmp_path_factory, tiny_predictor):
    path = str(tmp_path_factory.mktemp("export") / "model.jaxexport")
    size, meta = export_lib.write_exported(tiny_predictor, path)
    assert size == os.path.getsize(path) and os.path.exists(meta)
    return path


def test_exported_function_matches_the_api_for_any_batch(exported_file, tiny_predictor):
    exported = export_lib.load_exported(exported_file)
    rng = np.random.default_rng(3)
    for count in (1, 3):
        crops = [tiny_predictor.prepare(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),
                                        (5, 5, 40 + i, 45), hand_side=("right", "left")[i % 2]
                                        )[0] for i in range(count)]
        expected = tiny_predictor.predict_crops(crops)
        args = [np.stack([getattr(c, f) for c in crops]).astype(np.float32)
                for f in ("rgb", "crop_intrinsics", "crop_to_camera", "crop_to_image")]
        actual = exported.call(*args)
        assert sorted(actual) == sorted(expected)
        for key in expected:
            np.testing.assert_allclose(np.asarray(actual[key]), expected[key], atol=1e-5,
                                       rtol=1e-5, err_msg=key)


def test_readme_loader_runs_with_jax_and_numpy_only(tmp_path, exported_file, tiny_predictor):
    size = tiny_predictor.image_size
    crop = np.random.default_rng(4).integers(0, 256, (size, size, 3), dtype=np.uint8)
    np.save(tmp_path / "crop.npy", crop)
    for suffix in ("", ".json"):
        os.symlink(exported_file + suffix, tmp_path / ("model.jaxexport" + suffix))
    script = BLOCKER + _loader_snippet() + (
        "\nnp.savez('out.npz', **{k: np.asarray(v) for k, v in out.items()})\n")
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": "", "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = dict(np.load(tmp_path / "out.npz"))

    image_crop = np.asarray(crop, np.float32)
    rgb = (image_crop / 255.0 - geometry.spec.RGB_MEAN) / geometry.spec.RGB_STD
    K = np.array([[size, 0, (size - 1) / 2], [0, size, (size - 1) / 2], [0, 0, 1]])
    one = geometry.Crop(rgb=rgb.astype(np.float32), crop_intrinsics=K.astype(np.float32),
                        crop_to_camera=np.eye(3, dtype=np.float32),
                        crop_to_image=np.eye(3, dtype=np.float32), center=np.zeros(2),
                        side=float(size), box=(0, 0, size, size), K=K, hand_side="right",
                        view_rotation=np.eye(3))
    expected = tiny_predictor.predict_crops([one])
    for key in expected:
        np.testing.assert_allclose(loaded[key], expected[key], atol=1e-5, rtol=1e-5,
                                   err_msg=key)


def test_unknown_platforms_are_refused_and_the_metadata_lists_them(exported_file,
                                                                    tiny_predictor):
    """Issue 24: ``--platform foo`` wrote a file no machine runs; the metadata had no platforms."""
    with open(exported_file + ".json") as f:
        assert json.load(f)["platforms"] == ["cpu"]
    assert export_lib.load_exported(exported_file).platforms == ("cpu",)
    with pytest.raises(ValueError, match="valid platforms are cpu, cuda, rocm, tpu") as info:
        export_lib.export_predictor(tiny_predictor, platforms=("cpu", "foo"))
    assert "'foo'" in str(info.value)
    assert export_lib.check_platforms(["cuda", "cpu", "cuda"]) == ("cuda", "cpu")


def test_output_paths_that_would_fail_or_overwrite_are_refused(tmp_path, exported_file):
    """Issue 24: an ``--out`` that is a folder or below a file failed with a traceback."""
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "model.jaxexport.json").write_text('{"mine": 1}')
    for out, match in ((tmp_path, "is a folder"), (tmp_path / "notes.txt" / "m", "is a file"),
                       (tmp_path / "notes.txt", "not written by export"),
                       (tmp_path / "model.jaxexport", "model.jaxexport.json exists")):
        with pytest.raises(ValueError, match=match):
            export_lib.check_output_path(str(out))
    export_lib.check_output_path(exported_file)             # an earlier export: replaced
    export_lib.check_output_path(str(tmp_path / "new" / "m.jaxexport"))
    assert (tmp_path / "notes.txt").read_text() == "mine"
