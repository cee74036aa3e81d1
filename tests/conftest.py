"""Shared fixtures: small synthetic corpora written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from decar.testing import write_synthetic_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 one-second clips of 8 synthetic sound families."""
    folder = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(folder, files_per_kind=8, seconds=1.0)
    return folder
