"""Shared pytest plumbing.

Two CPU devices are forced before JAX is imported anywhere, so multi-device code (the
`("data",)` mesh) is exercised on every run; single-device tests are unaffected.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# --- Data (builder engineer): a built synthetic RHD set for end-to-end tests. ---------------
import pathlib  # noqa: E402

import pytest  # noqa: E402

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def rhd_synthetic_data_dir(tmp_path_factory) -> str:
    """TFDS data_dir with ``rhd/synthetic`` built from ``data_prep/rhd/dummy_data``.

    Built once per session (well under a second; 2 train, 1 validation and 2 test frames).
    Use it as::

        config.data.dataset = "synthetic"
        config.data.data_dir = rhd_synthetic_data_dir
        batches = handvae.data.pipeline.train_batches(config.data, 2, seed=0)
    """
    from data_prep import build

    data_dir = tmp_path_factory.mktemp("tfds")
    build.build("rhd", "synthetic", _REPO_ROOT / "data_prep" / "rhd" / "dummy_data", data_dir)
    return str(data_dir)
