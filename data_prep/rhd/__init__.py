"""TFDS builder for RHD (``rhd/real``, ``rhd/synthetic``); importing registers it."""
from data_prep.rhd.rhd_dataset_builder import Builder  # noqa: F401
