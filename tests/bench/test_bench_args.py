"""``bench attention`` refuses sizes it cannot measure instead of reporting them as "ok" (issue 17)."""

from __future__ import annotations

import pytest

from hybridformer.bench import run_benchmark
from hybridformer.errors import ConfigError
from tests.conftest import assert_one_line_error


@pytest.mark.parametrize("args, words", [
    (["-l", "abc"], ["--lengths", "'abc'"]),
    (["-l", "0"], ["lengths must be positive"]),
    (["--heads", "0"], ["heads must be positive"]),
    (["--bias", "foo"], ["bias='foo'", "alibi"]),
])
def test_bench_attention_refuses_bad_sizes(tmp_path, args, words, in_process):
    result = in_process("bench", "attention", "-m", "full", *args, "--out", tmp_path / "b")
    assert_one_line_error(result, 2, *words)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("mechanisms, kwargs, words", [
    (["full"], {"batch": 0}, ["batch must be positive"]),
    (["full"], {"head_dim": -1}, ["head_dim must be positive"]),
    (["full"], {"repeats": 0}, ["repeats must be positive"]),
    (["chunked:bias=foo"], {}, ["bias='foo'"]),
    (["sliding_window:window=0"], {}, ["window must be >= 1"]),
])
def test_run_benchmark_checks_before_measuring(mechanisms, kwargs, words):
    with pytest.raises(ConfigError) as info:
        run_benchmark(mechanisms, [16], **kwargs)
    for word in words:
        assert word in str(info.value)
