"""Fixtures of the input-pipeline tests (helpers in ``contract_fixtures``)."""

import pytest
from contract_fixtures import ContextSource

from handvae.data import source as source_lib


@pytest.fixture(scope="session")
def context_sources(rhd_synthetic_data_dir):
    """{"train", "test"}: the dummy synthetic RHD splits under the 2×-context contract."""
    from experiments.configs.common import get_base_config

    config = get_base_config("synthetic").data
    config.data_dir = rhd_synthetic_data_dir
    return {split: ContextSource(source_lib.load_source(config, split))
            for split in ("train", "test")}
