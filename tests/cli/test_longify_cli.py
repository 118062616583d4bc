"""``hybridformer longify`` through the real console script: success, generate on the result, one-line errors."""

from __future__ import annotations

from conftest import TINY_TEXT, assert_one_line_error, run_cli, run_entry

from hybridformer.checkpoint import load_config_file


def test_cli_longifies_and_refuses_impossible_configs(monkeypatch, capsys, tmp_path, tiny_checkpoint):
    source = tiny_checkpoint("decoder_lm", position="rope")
    done = run_entry("longify", source, "--attention", "sliding_window:window=4,sink_positions=cache",
                     "--global-tokens", "2", "--rope-scaling", "none", "--out", tmp_path / "long")
    assert done.returncode == 0, done.stderr
    assert load_config_file(tmp_path / "long").decoder.attention.options["sink_positions"] == "cache"
    (tmp_path / "in.txt").write_text("\n".join(TINY_TEXT[:2]) + "\n")
    code, out, err = run_cli(monkeypatch, capsys, "generate", tmp_path / "long", "--input", tmp_path / "in.txt",
                             "--max-len-b", "30")
    assert code == 0 and len(out.splitlines()) == 2, err
    bad = run_entry("longify", source, "--attention", "linformer", "--out", tmp_path / "bad")
    assert_one_line_error(bad, 2, "cannot be causal")
    huge = run_entry("longify", source, "--attention", "sliding_window", "--max-positions", str(2**63),
                     "--out", tmp_path / "bad")
    assert_one_line_error(huge, 2, "--max-positions", "16,777,216")
    for args, message in [
        (["--attention", "sliding_window", "--max-positions", "8"], "below the model's current"),
        (["--attention", "sliding_window", "--layers", "3"], "layer 3 does not exist"),
        (["--attention", "sliding_window", "--layers", "every:x"], "every:N needs"),
        (["--attention", "sliding_window:window"], "must look like key=value"),
        (["--attention", "sliding_window:sink_positions=later"], "sink_positions must be 'absolute' or 'cache'"),
        (["--attention", "sliding_window", "--max-positions", "1000000000000"], "beyond 16,777,216"),
        (["--attention", "sliding_window", "--global-tokens", "1000000000"], "exceeds the model's 1,024 positions"),
    ]:
        code, _, err = run_cli(monkeypatch, capsys, "longify", source, *args, "--out", tmp_path / "bad")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(monkeypatch, capsys, "longify", source, "--attention", "chunked", "--out", tmp_path / "long")
    assert code == 2 and "--overwrite" in err
    assert not (tmp_path / "bad").exists()


def test_generate_runs_on_a_longified_checkpoint(monkeypatch, capsys, tmp_path, tiny_checkpoint):
    source = tiny_checkpoint("decoder_lm", position="learned", max_positions=16)
    code, _, err = run_cli(monkeypatch, capsys, "longify", source, "--attention", "sliding_window:window=3",
                           "--max-positions", "64", "--out", tmp_path / "long")
    assert code == 0, err
    (tmp_path / "in.txt").write_text("\n".join(TINY_TEXT[:2]) + "\n")
    code, out, err = run_cli(monkeypatch, capsys, "generate", tmp_path / "long", "--input", tmp_path / "in.txt",
                             "--max-len-b", "30")
    assert code == 0, err
    assert len(out.splitlines()) == 2
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", tmp_path / "long", "--ref", tmp_path / "in.txt",
                             "--metric", "ppl")
    assert code == 0 and out.strip(), err
    code, _, err = run_cli(monkeypatch, capsys, "merge", "--method", "linear", tmp_path / "long", tmp_path / "long",
                           "--out", tmp_path / "merged")
    assert code == 0, err
    assert load_config_file(tmp_path / "merged") == load_config_file(tmp_path / "long")


def test_a_learned_table_larger_than_memory_is_refused(monkeypatch, capsys, tmp_path, tiny_checkpoint):
    source = tiny_checkpoint("decoder_lm", position="learned", max_positions=16)
    monkeypatch.setattr("os.sysconf", lambda name: {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 256}[name])  # 1 MiB
    code, _, err = run_cli(monkeypatch, capsys, "longify", source, "--attention", "sliding_window:window=3",
                           "--max-positions", "100000", "--out", tmp_path / "long")
    assert code == 2 and "learned position table would take" in err, err


def test_cli_layer_pattern_reports_decoding_memory(monkeypatch, capsys, tmp_path, tiny_checkpoint):
    source = tiny_checkpoint("decoder_lm", position="rope", decoder={"layers": 4})
    code, out, err = run_cli(monkeypatch, capsys, "longify", source, "--attention", "sliding_window:window=8",
                             "--global-tokens", "2", "--global-every", "2", "--rope-scaling", "yarn:2",
                             "--max-positions", "2048", "--out", tmp_path / "pattern")
    assert code == 0, err
    cfg = load_config_file(tmp_path / "pattern")
    assert sorted(cfg.decoder.layer_attention) == [0, 2] and sorted(cfg.decoder.layer_rope_scaling) == [1, 3]
    # float32 K+V, 2 heads x 8 dims: 128 B per token and layer; 2 x 10 + 2 x 2,048 tokens vs 4 x 2,048
    assert "decoding memory at 2,048 tokens (float32 KV caches): 0.5 MiB, full attention 1.0 MiB" in out
    code, _, err = run_cli(monkeypatch, capsys, "longify", source, "--attention", "sliding_window", "--global-every",
                           "2", "--layer-attention", "l,g", "--out", tmp_path / "bad")
    assert code == 2 and "one layer pattern" in err


def test_generate_runs_with_kept_keys_and_bad_keep_is_refused(monkeypatch, capsys, tmp_path, tiny_checkpoint):
    source = tiny_checkpoint("decoder_lm", position="rope", max_positions=16)
    code, out, err = run_cli(monkeypatch, capsys, "longify", source, "--attention",
                             "sliding_window:window=3,sink_positions=cache,keep=2,observe=2", "--global-tokens", "1",
                             "--max-positions", "64", "--out", tmp_path / "long")
    assert code == 0, err
    assert load_config_file(tmp_path / "long").decoder.attention.options["keep"] == 2
    (tmp_path / "in.txt").write_text("\n".join(TINY_TEXT[:2]) + "\n")
    code, out, err = run_cli(monkeypatch, capsys, "generate", tmp_path / "long", "--input", tmp_path / "in.txt",
                             "--max-len-b", "6")
    assert code == 0, err
    assert len(out.splitlines()) == 2
    code, _, err = run_cli(monkeypatch, capsys, "longify", source, "--attention", "sliding_window:window=3,keep=2",
                           "--out", tmp_path / "bad")
    assert code == 2 and "observe (32) must be <= window (3)" in err, err
