"""Numerical helpers shared by every layer: camera, rotations, skeleton, Gaussians."""
