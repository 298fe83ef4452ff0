"""handvae: aligning latent spaces of RGB, 3-D pose, heat maps and point clouds for hand pose."""

__version__ = "0.1.0"
