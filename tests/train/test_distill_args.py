"""``distill --temperature nan`` (or inf) is refused before any teacher is loaded (issue 17: it trained to NaN)."""

from __future__ import annotations

import pytest

from tests.conftest import assert_one_line_error


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_distill_refuses_a_non_finite_temperature(tmp_path, value, in_process):
    (tmp_path / "student.yaml").write_text("data: {builtin: reverse}\n")
    result = in_process("distill", "--teacher", tmp_path / "no-such-teacher", "--config", tmp_path / "student.yaml",
                       "--out", tmp_path / "student", "--temperature", value)
    assert_one_line_error(result, 2, "--temperature")
