"""Input pipeline: batch contract (spec), crops, augmentation, heat maps, clouds, batches."""
from handvae.data import spec
from handvae.data.source import load_source
from handvae.data.pipeline import (eval_batches, example_to_features,
                                   train_batches)

__all__ = ["spec", "load_source", "train_batches", "eval_batches", "example_to_features"]
