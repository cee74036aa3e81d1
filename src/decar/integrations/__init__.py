"""Adapters that let other tools use decar encoders: s3prl/SUPERB upstreams and ONNX export.

Each submodule imports its heavy optional dependencies lazily, so ``import decar`` never needs them.
"""
