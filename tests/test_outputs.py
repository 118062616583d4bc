"""The output guard (issue 17): nothing at --out is deleted unless it is a checkpoint the user asked to replace."""

from __future__ import annotations

import pytest

from hybridformer.errors import DataError
from hybridformer.outputs import prepare_output_dir, prepare_output_file, prepare_run_dir
from tests.conftest import assert_one_line_error, run_entry


@pytest.fixture
def ckpt(tiny_checkpoint):
    return tiny_checkpoint()


def _run_dir(root):
    step = root / "checkpoints" / "step-000002"
    step.mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "trainer_state.pt"):
        (step / name).write_text("x")
    (root / "metrics.jsonl").write_text("{}\n")
    return root


def test_absent_and_empty_outputs_are_fine(tmp_path):
    assert prepare_output_dir(tmp_path / "new", overwrite=False) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    prepare_output_dir(tmp_path / "empty", overwrite=False)
    prepare_output_file(tmp_path / "w.json", overwrite=False)
    prepare_run_dir(tmp_path / "run")


def test_existing_checkpoint_needs_overwrite(ckpt):
    with pytest.raises(DataError, match="--overwrite"):
        prepare_output_dir(ckpt, overwrite=False)
    prepare_output_dir(ckpt, overwrite=True)


@pytest.mark.parametrize("case", ["folder", "file", "run", "step", "best", "input", "inside_input", "link"])
def test_never_replaced_even_with_overwrite(tmp_path, ckpt, case):
    if case == "folder":
        out = tmp_path / "precious"
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    elif case == "file":
        out = tmp_path / "notes.txt"
        out.write_text("keep me")
    elif case == "run":
        out = _run_dir(tmp_path / "run")
    elif case == "step":
        out = _run_dir(tmp_path / "run") / "checkpoints" / "step-000002"
    elif case == "best":
        run = _run_dir(tmp_path / "run")
        out = ckpt.rename(run / "checkpoints" / "best")
    elif case == "link":
        out = tmp_path / "link"
        out.symlink_to(ckpt)
    else:
        out = ckpt if case == "input" else ckpt / "sub"
    with pytest.raises(DataError) as info:
        prepare_output_dir(out, overwrite=True, inputs=[ckpt])
    assert "\n" not in str(info.value)


def test_output_file_rules(tmp_path):
    existing = tmp_path / "weights.json"
    existing.write_text("{}")
    with pytest.raises(DataError, match="--overwrite"):
        prepare_output_file(existing, overwrite=False)
    prepare_output_file(existing, overwrite=True)
    with pytest.raises(DataError, match="input"):
        prepare_output_file(existing, overwrite=True, inputs=[existing])
    with pytest.raises(DataError, match="directory"):
        prepare_output_file(tmp_path, overwrite=True)
    with pytest.raises(DataError, match="is a file"):
        prepare_output_file(existing / "x.json", overwrite=True)


def test_run_dir_refuses_a_foreign_folder_and_a_file(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text("my own file")
    with pytest.raises(DataError, match="not a training run"):
        prepare_run_dir(tmp_path / "mine")
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        prepare_run_dir(tmp_path / "f")
    prepare_run_dir(_run_dir(tmp_path / "run"))


# ----------------------------------------------------------------------------- through the real entry point

def test_average_into_its_own_run_keeps_the_run(tmp_path):
    run = _run_dir(tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = run_entry("average", "--last", "1", run, "--out", run, "--overwrite")
    assert_one_line_error(result, 2, str(run))
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_commands_refuse_to_delete_unrelated_files(tmp_path, ckpt):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    note = tmp_path / "some_file.txt"
    note.write_text("keep me")
    for args in (["average", ckpt, "--out", precious], ["quantize", ckpt, "--out", note, "--overwrite"],
                 ["quantize", ckpt, "--out", ckpt, "--overwrite"]):
        assert_one_line_error(run_entry(*args), 2, "--out")
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert note.read_text() == "keep me"
    assert (ckpt / "model.safetensors").exists()


def test_overwrite_replaces_a_checkpoint(tmp_path, ckpt):
    out = tmp_path / "avg"
    assert run_entry("average", ckpt, ckpt, "--out", out).returncode == 0
    assert_one_line_error(run_entry("average", ckpt, ckpt, "--out", out), 2, "--overwrite")
    result = run_entry("average", ckpt, ckpt, "--out", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").exists()


def test_tokenizer_train_keeps_its_input_and_existing_files(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\n" * 20)
    assert_one_line_error(run_entry("tokenizer", "train", text, "--kind", "char", "--out", text, "--overwrite"),
                          2, "input")
    assert text.read_text().startswith("the cat")
    out = tmp_path / "tok.json"
    out.write_text("mine")
    assert_one_line_error(run_entry("tokenizer", "train", text, "--kind", "char", "--out", out), 2, "--overwrite")
    assert out.read_text() == "mine"
