"""Encoders, decoders and the multi-modal VAE (Yang et al., ICCV 2019) with its strategies."""

from handvae.models.decoders import FoldingDecoder, HeatmapDecoder, PoseDecoder, folding_grid
from handvae.models.encoders import CloudEncoder, JointEncoder, RGBEncoder
from handvae.models.registry import STRATEGY_SPECS, StrategySpec, get_strategy
from handvae.models.resnet import ResNet18
from handvae.models.respel import ResPEL
from handvae.models.vae import (STRATEGIES, HandVAE, build_model, decode_cloud, encode_rgb,
                                init_variables, interpolate_latents, predict_pose)

__all__ = [
    "STRATEGIES", "STRATEGY_SPECS", "CloudEncoder", "FoldingDecoder", "HandVAE",
    "HeatmapDecoder", "JointEncoder", "PoseDecoder", "RGBEncoder", "ResNet18", "ResPEL",
    "StrategySpec", "build_model", "decode_cloud", "encode_rgb", "folding_grid",
    "get_strategy", "init_variables", "interpolate_latents", "predict_pose",
]
