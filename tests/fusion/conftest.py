"""Fixtures for the fusion tests (helpers live in fusion_helpers.py)."""

from __future__ import annotations

import pytest
from fusion.fusion_helpers import make_checkpoint


@pytest.fixture
def ckpt(tmp_path):
    """``ckpt(name, **kwargs)`` -> a tiny checkpoint directory under tmp_path."""
    return lambda name, **kwargs: make_checkpoint(tmp_path / name, **kwargs)
