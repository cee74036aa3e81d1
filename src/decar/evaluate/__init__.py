"""Downstream evaluation: tasks (standard corpora, HEAR folders, manifests), probes, baselines, reports."""

PRETRAINED = "pretrained"
"""The model spec of the model bundled with decar; here, where importing it costs no torch (the CLI uses it)."""
