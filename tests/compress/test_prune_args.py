"""``prune`` refuses counts of zero before it loads anything (issue 17: ``--max-examples 0`` said "in.txt is empty")."""

from __future__ import annotations

import pytest

from tests.conftest import assert_one_line_error


@pytest.mark.parametrize("flag", ["--batch-size", "--max-examples"])
def test_prune_refuses_zero_counts(tiny_checkpoint, tmp_path, flag, in_process):
    path = tiny_checkpoint()
    (tmp_path / "in.txt").write_text("the cat sat\n")
    result = in_process("prune", path, "--heads", "0.5", "--data", tmp_path / "in.txt", "--data", tmp_path / "in.txt",
                       flag, "0", "--out", tmp_path / "pruned")
    assert_one_line_error(result, 2, flag, "at least 1")
    assert not (tmp_path / "pruned").exists()
