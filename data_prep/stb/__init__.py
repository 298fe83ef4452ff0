"""TFDS builder for STB (``stb/real``, ``stb/synthetic``); importing registers it."""
from data_prep.stb.stb_dataset_builder import Builder  # noqa: F401
