"""Downstream evaluation: tasks (standard corpora, HEAR folders, manifests), probes, baselines, reports."""
