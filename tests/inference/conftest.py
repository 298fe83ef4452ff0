import pytest
from inference_helpers import trained_workdir


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory, rhd_synthetic_data_dir) -> str:
    """A 2-step R2CHP run (pose, heat maps and cloud decoders)."""
    return trained_workdir(tmp_path_factory.mktemp("inference"), rhd_synthetic_data_dir)


@pytest.fixture(scope="session")
def tiny_predictor(tiny_workdir):
    from handvae.inference import Predictor

    return Predictor.from_workdir(tiny_workdir, batch_size=4)
