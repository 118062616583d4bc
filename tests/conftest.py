"""Shared test helpers: tiny configs, seeded RNG, the path to the shared real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (needs ../shared/data beside the checkout)")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
