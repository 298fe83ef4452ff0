"""Helpers shared by every layer (and by data_prep): camera, rotations, skeleton, Gaussians,
process liveness (``processes.pid_alive``)."""
