"""No run destroys data already on disk or silently trains on the wrong data: any trace of a run makes a directory
one (`train` without `--resume` refuses it, untouched), `--resume` needs a run to continue, `--set task.params`
merges into the path `--data` gave, and a few inputs that used to pass are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import snapshot

from smtrnn.checkpoint import CHECKPOINTS_DIR, METRICS_FILE, holds_run
from smtrnn.cli import build_config, main, make_parser

TRAIN = ["train", "--preset", "debug", "--task", "retrieval", "--steps", "2", "--quiet", "--device", "cpu"]


def one_line_exit_2(capsys, argv, *words):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("smtrnn: error:") and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_directory_with_only_a_metrics_log_is_a_run_and_is_not_emptied(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / METRICS_FILE).write_text('{"step": 1, "loss": 2.0}\n')
    assert holds_run(run)
    before = tree(run)
    one_line_exit_2(capsys, [*TRAIN, "--out", run], str(run), "--resume")
    assert tree(run) == before


def test_a_directory_with_only_checkpoint_folders_is_a_run_and_keeps_them(capsys, tmp_path):
    run = tmp_path / "run"
    (run / CHECKPOINTS_DIR / "step-00000005").mkdir(parents=True)
    (run / CHECKPOINTS_DIR / "step-00000005" / "model.safetensors").write_bytes(b"weights of another run")
    (run / CHECKPOINTS_DIR / "notes.txt").write_text("keep me")
    before = tree(run)
    one_line_exit_2(capsys, [*TRAIN, "--out", run], "already holds a run")
    assert tree(run) == before


def test_an_empty_or_unrelated_directory_is_not_a_run(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    assert not holds_run(tmp_path) and not holds_run(tmp_path / "missing")


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_resume_needs_a_run_to_continue(capsys, tmp_path, make):
    run = tmp_path / "run"
    if make == "empty":
        run.mkdir()
    one_line_exit_2(capsys, [*TRAIN, "--resume", "--out", run], "--resume", "holds no run")
    assert not (run / METRICS_FILE).exists()


def test_resume_continues_a_run_killed_before_its_first_checkpoint(capsys, tmp_path):
    """A log and nothing else (killed before the first save): --resume starts it over from step 0."""
    run = tmp_path / "run"
    run.mkdir()
    (run / METRICS_FILE).write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert main([*TRAIN, "--resume", "--set", "train.log_every=1", "--out", str(run)]) == 0
    logged = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 2]  # two steps and the final evaluation, logged afresh
    assert logged[0]["loss"] != 2.0


def test_an_empty_out_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_exit_2(capsys, [*TRAIN, "--out", ""], "--out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_sample_temperature_must_be_finite_and_non_negative(capsys, smt_run, value):
    run_dir, _ = smt_run
    before = snapshot(run_dir)
    one_line_exit_2(
        capsys, ["sample", run_dir, "--prompt", "1,2", "--temperature", value, "--device", "cpu"], "--temperature"
    )
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("order", ["data first", "set first"])
def test_set_task_params_merges_into_the_path_from_data(tmp_path, order):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world\n" * 200)
    data = ["--data", str(corpus)]
    setting = ["--set", 'task.params={"max_bytes": 1000}']
    argv = [
        "train",
        "--task",
        "text",
        "--out",
        str(tmp_path / "run"),
        *(data + setting if order == "data first" else setting + data),
    ]
    cfg = build_config(make_parser().parse_args(argv))
    assert cfg.task.params == {"path": str(corpus), "max_bytes": 1000}


def test_set_task_params_keeps_a_presets_other_task_parameters():
    cfg = build_config(
        make_parser().parse_args(
            ["train", "--preset", "debug", "--task", "delayed_recall", "--out", "x", "--set", 'task.params={"lag": 3}']
        )
    )
    assert cfg.task.params == {"num_symbols": 4, "lag": 3}


def test_every_file_of_a_run_has_the_usual_mode(smt_run):
    """safetensors writes 0600; the weights must be as readable as the config beside them."""
    import os
    import stat

    run_dir, _ = smt_run
    umask = os.umask(0)
    os.umask(umask)
    for path in [p for p in Path(run_dir).rglob("*") if p.is_file()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_a_directory_as_config_and_a_file_as_run_are_named_as_such(capsys, tmp_path):
    one_line_exit_2(capsys, [*TRAIN, "--config", tmp_path, "--out", tmp_path / "run"], "is a directory")
    (tmp_path / "notes.txt").write_text("x")
    one_line_exit_2(capsys, ["eval", tmp_path / "notes.txt", "--device", "cpu"], "is a file, not a run directory")


def test_a_text_file_named_npy_is_refused_without_numpys_unpickling_hint(capsys, tmp_path):
    fake = tmp_path / "tokens.npy"
    fake.write_text("hello world\n" * 50)
    code = main(
        [
            "train",
            "--task",
            "text",
            "--data",
            str(fake),
            "--steps",
            "1",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a .npy file" in err and "allow_pickle" not in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--seed", str(2**64)], "train.seed must be in [0, 2^63)"),
        (["--seq-len", str(10**13)], "needs at least"),
        (["--memory-size", str(10**12)], "needs at least"),
    ],
)
def test_sizes_that_cannot_be_allocated_and_seeds_out_of_range_are_one_line(capsys, tmp_path, argv, words):
    one_line_exit_2(capsys, [*TRAIN, *argv, "--out", tmp_path / "run"], words)
    assert not (tmp_path / "run").exists()  # not even an empty folder is left behind


def test_a_failed_run_keeps_a_folder_that_was_there_before(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    one_line_exit_2(capsys, [*TRAIN, "--seq-len", str(10**13), "--out", tmp_path / "run"], "needs at least")
    assert (tmp_path / "run").is_dir() and not holds_run(tmp_path / "run")


@pytest.mark.parametrize(
    "content, words", [(b'{"train": {"steps": 1e400}}', "train.steps must be int"), (b"\xff\xfe{}", "not UTF-8")]
)
def test_config_files_with_overflowing_numbers_or_other_encodings_are_one_line(capsys, tmp_path, content, words):
    config = tmp_path / "config.json"
    config.write_bytes(content)
    one_line_exit_2(capsys, [*TRAIN, "--config", config, "--out", tmp_path / "run"], words)


@pytest.mark.parametrize("command", [[*TRAIN, "--out"], ["demo", "--budget", "0.1", "--seq-len", "8", "--out"]])
def test_an_output_path_under_a_regular_file_is_one_line(capsys, tmp_path, command):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    one_line_exit_2(capsys, [*command, blocker / "run"], "cannot use", "Not a directory")
    assert blocker.read_text() == "keep"


def test_a_png_path_under_a_regular_file_is_named_itself(capsys, tmp_path):
    from smtrnn.tools.png import write_png

    blocker = tmp_path / "file"
    blocker.write_text("keep")
    with pytest.raises(OSError) as caught:
        write_png(blocker / "x.png", torch.zeros(2, 2, dtype=torch.uint8))
    assert caught.value.filename == str(blocker / "x.png") and blocker.read_text() == "keep"


def test_a_data_path_that_is_not_a_string_is_one_line(capsys, tmp_path):
    one_line_exit_2(
        capsys,
        ["train", "--task", "text", "--set", 'task.params={"path": 5}', "--out", tmp_path / "r"],
        "path must be a string",
    )


def test_a_destructive_update_is_never_checkpointed(capsys, tmp_path):
    """lr 1e30: step 1's loss and gradients are finite, the update leaves weights near 1e27; they are not saved."""
    run = tmp_path / "run"
    assert main([*TRAIN[:5], "--steps", "1", "--lr", "1e30", "--quiet", "--device", "cpu", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not finite" in err and "not saved" in err
    assert not list(run.rglob("model.safetensors"))


@pytest.mark.parametrize("scale, words", [(float("nan"), "non-finite weights"), (1e27, "not finite")])
def test_eval_and_sample_of_damaged_weights_are_one_line(capsys, smt_run_copy, scale, words):
    from safetensors.torch import load_file, save_file

    for path in smt_run_copy.rglob("model.safetensors"):
        weights = {k: v * scale for k, v in load_file(str(path)).items()}
        path.unlink()
        save_file(weights, str(path), metadata={"format": "smtrnn-checkpoint-1"})
    one_line_exit_2(capsys, ["eval", smt_run_copy, "--device", "cpu"], words, "damaged")
    one_line_exit_2(capsys, ["sample", smt_run_copy, "--prompt", "1", "--device", "cpu"], words)


def test_sample_text_takes_a_prompt_that_is_not_valid_utf8_as_its_bytes(capsys, tmp_path):
    run = tmp_path / "text"
    assert (
        main(
            [
                "train",
                "--preset",
                "debug",
                "--task",
                "text",
                "--steps",
                "2",
                "--quiet",
                "--device",
                "cpu",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    capsys.readouterr()
    prompt = b"\xff\xfe abc".decode("utf-8", errors="surrogateescape")  # how such argv reaches Python
    assert main(["sample", str(run), "--text", prompt, "--length", "3", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("\ufffd\ufffd abc")


def test_an_hf_folder_with_a_dataset_script_is_one_line(capsys, tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "scripted"
    folder.mkdir()
    (folder / "scripted.py").write_text("import datasets\n")
    one_line_exit_2(
        capsys,
        [
            "train",
            "--task",
            "text",
            "--data",
            f"hf:{folder}",
            "--steps",
            "1",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            tmp_path / "run",
        ],
        "datasets cannot load it",
    )
