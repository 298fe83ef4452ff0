"""Procedural synthetic hands written in RHD's and STB's own on-disk layouts (issue 3).

Modules: ``hand`` (kinematic hand, joint limits, pose sampler), ``render`` (vectorised
capsule/slab renderer), ``background`` (textures, background plane), ``scene`` (one placed,
rendered hand), ``rhd_writer`` / ``stb_writer`` (the layouts), ``output`` (seeds, atomic
output folders, worker pool). Command line: ``python -m data_prep.synthetic --help``.
Uses ``handvae.ops`` only; ``handvae`` never imports this package.
"""
