"""Files stay small and single-purpose (STYLE.md: aim under 400 lines): the config package and the training loop,
which grew past it once, are held to it."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hybridformer"
HELD = [*sorted((SRC / "config").glob("*.py")), SRC / "train" / "trainer.py"]


def test_config_modules_and_the_trainer_stay_under_400_lines() -> None:
    assert len(HELD) >= 5 and not (SRC / "config.py").exists()
    sizes = {str(path.relative_to(SRC)): len(path.read_text().splitlines()) for path in HELD}
    assert {name: lines for name, lines in sizes.items() if lines > 400} == {}


def test_the_results_page_stays_a_page() -> None:
    """docs/RESULTS.md holds current figures by topic; superseded ones move to docs/results-history.md."""
    results = SRC.parents[1] / "docs" / "RESULTS.md"
    assert len(results.read_text().splitlines()) <= 900
