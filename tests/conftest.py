"""Shared pytest plumbing.

Two CPU devices are forced before JAX is imported anywhere, so multi-device code (the
`("data",)` mesh) is exercised on every run; single-device tests are unaffected.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
