"""Imported by tests that must prove the engine never imports TensorFlow into the caller's process."""

import sys

import convfix  # noqa: F401
from convfix import engine  # noqa: F401

assert "tensorflow" not in sys.modules, "convfix's engine imported TensorFlow into the caller"
