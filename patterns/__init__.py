"""Detectors: each module registers functions with convfix.matcher; they only read the model."""
