"""The `smtrnn` command, run in-process through `smtrnn.cli.main`: a smoke run of every subcommand, and the
contract for bad input: exit code 2, exactly one line on stderr starting `smtrnn: error:` that names the
problem, no traceback, and nothing written or overwritten."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support import snapshot

from smtrnn.checkpoint import WEIGHTS_FILE, checkpoint_dir, load_model
from smtrnn.cli import main
from smtrnn.config import RunConfig, validate
from smtrnn.presets import PRESETS
from smtrnn.sample import continue_prompt, stream_continuation

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--preset", "debug", "--task", "retrieval", "--steps", "5", "--quiet", "--device", "cpu"]
TEACHER_KEYS = {
    "teacher_accuracy",
    "teacher_bits_per_token",
    "readout_on_teacher_accuracy",
    "onestep_accuracy",
    "drift",
    "drift_final",
    "memory_effective_rank",
    "memory_uniformity",
}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, Path]:
    """One SMT and one BPTT run trained through the CLI (do not modify: copy)."""
    runs = {}
    for method in ("smt", "bptt"):
        out = tmp_path_factory.mktemp("cli") / method
        assert main(TRAIN + ["--method", method, "--out", str(out)]) == 0
        runs[method] = out
    return runs


# --- smoke --------------------------------------------------------------------------------------------------


def test_train_prints_the_final_evaluation_and_writes_a_run(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *TRAIN, "--method", "smt", "--out", out)
    assert code == 0, err
    result = json.loads(stdout)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert result["rnn_accuracy"] == logged[-1]["eval"]["rnn_accuracy"] and logged[-1]["step"] == 5  # the final one
    assert {"checkpoints", "latest", "metrics.jsonl"} == set(os.listdir(out))
    assert json.loads((checkpoint_dir(out) / "config.json").read_text())["step"] == 5


def test_eval_json_is_one_object_with_rnn_and_teacher_scores(capsys, cli_runs):
    code, out, err = run_cli(capsys, "eval", cli_runs["smt"], "--json", "--batches", "1", "--device", "cpu")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    result = json.loads(out)
    assert {"rnn_accuracy", "rnn_bits_per_token", "teacher_accuracy", "drift"} <= set(result)
    assert isinstance(result["drift"], dict) and result["drift"]


def test_eval_of_a_bptt_run_has_no_teacher_scores(capsys, cli_runs):
    code, out, err = run_cli(capsys, "eval", cli_runs["bptt"], "--json", "--batches", "1", "--device", "cpu")
    assert code == 0, err
    result = json.loads(out)
    assert {"rnn_accuracy", "rnn_bits_per_token"} <= set(result)
    assert not TEACHER_KEYS & set(result)


def test_eval_table_prints_one_line_per_score(capsys, cli_runs):
    argv = ["eval", cli_runs["smt"], "--batches", "1", "--device", "cpu"]
    code, table, _ = run_cli(capsys, *argv)
    assert code == 0
    _, as_json, _ = run_cli(capsys, *argv, "--json")
    assert [line.split()[0] for line in table.strip().splitlines()] == list(json.loads(as_json))


def test_sample_prints_the_requested_number_of_token_ids(capsys, cli_runs):
    code, out, err = run_cli(capsys, "sample", cli_runs["smt"], "--prompt", "1,2,3", "--length", 5, "--device", "cpu")
    assert code == 0, err
    tokens = [int(t) for t in out.split()]
    assert len(tokens) == 5
    assert all(0 <= t < 6 for t in tokens)  # retrieval with 4 symbols: vocabulary 6


def test_sampling_at_a_temperature_is_seeded(capsys, cli_runs):
    argv = ["sample", cli_runs["smt"], "--prompt", "0 1", "--length", 8, "--temperature", 1.0, "--device", "cpu"]
    outs = [run_cli(capsys, *argv, "--seed", seed)[1] for seed in (3, 3)]
    assert outs[0] == outs[1]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_streamed_tokens_are_continue_prompts(temperature, cli_runs):
    _, model = load_model(cli_runs["smt"])
    prompt = torch.tensor([[1, 2, 3], [0, 1, 2]])
    whole = continue_prompt(model.rnn, prompt, 12, temperature, torch.Generator().manual_seed(5))
    streamed = list(stream_continuation(model.rnn, prompt, 12, temperature, torch.Generator().manual_seed(5)))
    assert len(streamed) == 12 and all(token.shape == (2,) for token in streamed)
    assert torch.equal(torch.stack(streamed, dim=1), whole)


def test_sample_prints_continue_prompts_tokens_greedily_and_alike_each_time(capsys, cli_runs):
    _, model = load_model(cli_runs["smt"])
    expected = continue_prompt(model.rnn, torch.tensor([[1, 2, 3]]), 12)[0].tolist()
    argv = ["sample", cli_runs["smt"], "--prompt", "1,2,3", "--length", 12, "--device", "cpu"]
    outs = [run_cli(capsys, *argv, "--seed", seed)[1] for seed in (0, 1)]  # greedy: the seed plays no part
    assert outs[0] == outs[1] == " ".join(map(str, expected)) + "\n"


def test_sample_text_prints_bytes_split_over_tokens_as_whole_characters(capsys, tmp_path, monkeypatch):
    run = tmp_path / "text"
    assert (
        main(
            [
                "train",
                "--task",
                "text",
                "--preset",
                "debug",
                "--steps",
                "1",
                "--out",
                str(run),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    drawn = "é€😀".encode() + b"\xff" + b"z"  # 2-, 3- and 4-byte characters, then a byte that begins none
    monkeypatch.setattr("smtrnn.cli.stream_continuation", lambda *args: (torch.tensor([b]) for b in drawn))
    chunks = []
    monkeypatch.setattr("smtrnn.cli._emit", chunks.append)
    assert main(["sample", str(run), "--text", "hé", "--length", str(len(drawn)), "--device", "cpu"]) == 0
    assert "".join(chunks) == ("hé".encode() + drawn).decode("utf-8", errors="replace") + "\n"
    assert "".join(chunks).count("\ufffd") == 1  # only the lone byte: no character was cut between two tokens
    assert len(chunks) > 3  # printed as drawn, not at the end


@pytest.mark.parametrize(
    "command, hint",
    [
        ("export", "the model does not fit in memory"),
        ("sample", "the model does not fit in memory"),
        ("eval", "--seq-len lengths, or --no-diagnostics"),
    ],
)
def test_out_of_memory_names_only_what_the_command_can_change(command, hint, capsys, cli_runs, tmp_path, monkeypatch):
    def exhausted(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes")

    monkeypatch.setattr("smtrnn.cli.load_model", exhausted)
    argv = {"export": ["--out", tmp_path / "x.pt"], "sample": ["--prompt", "1"], "eval": []}[command]
    code, out, err = run_cli(capsys, command, cli_runs["smt"], *argv)
    assert_one_line_error(code, out, err, "out of memory", "you tried to allocate 9 bytes", hint)
    assert "--batch-size" not in err and "--memory-size" not in err


@pytest.mark.slow
def test_sample_streams_a_billion_tokens_and_stops_when_the_reader_does(cli_runs):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smtrnn",
            "sample",
            str(cli_runs["smt"]),
            "--prompt",
            "1",
            "--length",
            "1000000000",
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first, deadline = b"", time.monotonic() + 120
    while len(first) < 40:  # it arrives while the rest is still being drawn
        if not select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))[0]:
            proc.kill()
            pytest.fail("sample printed nothing: its output is not streamed")
        chunk = os.read(proc.stdout.fileno(), 40 - len(first))
        assert chunk, proc.stderr.read()
        first += chunk
    proc.stdout.close()  # the reader stops, like `| head`
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""
    assert len(first.split()) >= 10


def test_demo_trains_both_methods_and_prints_a_table(capsys, tmp_path):
    code, out, err = run_cli(
        capsys, "demo", "--budget", 0.2, "--seq-len", 8, "--out", tmp_path / "demo", "--device", "cpu"
    )
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| smt") or line.startswith("| bptt")]
    assert len(rows) == 2
    progress = [line for line in err.splitlines() if line.startswith(("smt+dmt:", "bptt:"))]
    assert [line.split(":")[0] for line in progress] == ["smt+dmt", "smt+dmt", "bptt", "bptt"]  # start, end each
    assert "training for 0.2 s" in progress[0] and "RNN alone" in progress[1]
    assert (checkpoint_dir(tmp_path / "demo" / "smt-dmt") / WEIGHTS_FILE).exists()
    assert (checkpoint_dir(tmp_path / "demo" / "bptt") / WEIGHTS_FILE).exists()


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_module_entry_point_help():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "smtrnn", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "eval", "sample", "demo"):
        assert command in proc.stdout


@pytest.mark.parametrize("command", ["train", "compare", "demo"])
def test_preset_help_names_every_preset(command, capsys, monkeypatch):
    """--preset's help comes from the presets: one added to PRESETS is listed with the rest."""
    monkeypatch.setitem(PRESETS, "added_preset", PRESETS["debug"])
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    entry = out.split("\n  --preset PRESET", 1)[1].split("\n  --", 1)[0]  # up to the next flag
    listed = set(re.findall(r"\w+", entry))
    assert set(PRESETS) <= listed, sorted(set(PRESETS) - listed)


# --- bad input ----------------------------------------------------------------------------------------------


def assert_one_line_error(code: int, out: str, err: str, *names: str) -> None:
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("smtrnn: error: ")
    for name in names:
        assert name in lines[0], lines[0]


BAD_TRAIN = {
    "unknown task": (["--task", "nope"], ["nope"]),
    "unknown cell": (["--cell", "nope"], ["cell", "nope"]),
    "unknown method": (["--method", "nope"], ["method", "nope"]),
    "memory size not divisible by tokens": (["--memory-tokens", "3", "--memory-size", "16"], ["--memory-size", "16"]),
    "memory size zero": (["--memory-size", "0"], ["--memory-size"]),
    "seq-len below the task minimum": (["--seq-len", "2"], ["seq_len", "3"]),
    "steps 0": (["--steps", "0"], ["steps"]),
    "steps negative": (["--steps", "-3"], ["steps", "-3"]),
    "steps not an integer": (["--steps", "many"], ["many"]),
    "batch size 0": (["--batch-size", "0"], ["batch_size"]),
    "unknown --set field": (["--set", "rnn.nope=1"], ["rnn.nope"]),
    "unknown --set section": (["--set", "nope.cell=gru"], ["nope.cell"]),
    "malformed --set": (["--set", "rnn.cell"], ["FIELD=VALUE", "rnn.cell"]),
    "--set with a value of the wrong type": (["--set", "train.seed=abc"], ["train.seed", "abc"]),
    "--set task params not JSON": (["--set", "task.params={lag"], ["task.params"]),
    "--set unknown task parameter": (["--set", 'task.params={"nope": 1}'], ["nope"]),
    "unknown preset": (["--preset", "huge"], ["huge"]),
    "unknown device": (["--device", "toaster"], ["toaster"]),
}


@pytest.mark.parametrize("extra, names", BAD_TRAIN.values(), ids=BAD_TRAIN.keys())
def test_bad_train_arguments(capsys, tmp_path, extra, names):
    out = tmp_path / "run"
    argv = TRAIN + ["--method", "smt", "--out", str(out)] + extra
    assert_one_line_error(*run_cli(capsys, *argv), *names)
    assert not out.exists()  # a refused run leaves nothing behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_an_unavailable_device(capsys, tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(*run_cli(capsys, *TRAIN, "--out", out, "--device", "cuda"), "cuda")
    assert not out.exists()


def test_missing_required_argument(capsys):
    assert_one_line_error(*run_cli(capsys, "train", "--preset", "debug"), "--out")


def test_no_subcommand(capsys):
    assert_one_line_error(*run_cli(capsys))


def test_missing_config_file(capsys, tmp_path):
    missing = tmp_path / "missing.yaml"
    assert_one_line_error(*run_cli(capsys, *TRAIN, "--out", tmp_path / "run", "--config", missing), "missing.yaml")


@pytest.mark.parametrize(
    "name, text", [("bad.yaml", "rnn: [1, 2\n"), ("bad.json", "{not json"), ("list.yaml", "- 1\n- 2\n")]
)
def test_bad_config_file(capsys, tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert_one_line_error(*run_cli(capsys, *TRAIN, "--out", tmp_path / "run", "--config", path), name)


def test_config_file_with_an_unknown_field(capsys, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"rnn": {"nope": 1}}))
    assert_one_line_error(*run_cli(capsys, *TRAIN, "--out", tmp_path / "run", "--config", path), "rnn.nope")


def test_config_file_is_applied(capsys, tmp_path):
    """The positive twin of the config-file errors: a valid file reaches the run config (under the flags)."""
    path = tmp_path / "cfg.yaml"
    path.write_text("rnn:\n  cell: gru\ntask:\n  seq_len: 9\n")
    code, out, err = run_cli(capsys, *TRAIN, "--steps", 2, "--config", path, "--print-config")
    assert code == 0, err
    built = json.loads(out)
    validate(RunConfig.from_dict(built))
    assert (built["rnn"]["cell"], built["task"]["seq_len"], built["train"]["steps"]) == ("gru", 9, 2)


def test_eval_of_a_missing_dir(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert_one_line_error(*run_cli(capsys, "eval", missing, "--device", "cpu"), str(missing))


def test_eval_of_a_dir_that_holds_no_run(capsys, tmp_path):
    assert_one_line_error(*run_cli(capsys, "eval", tmp_path, "--device", "cpu"), "config.json")


def test_eval_of_a_run_with_corrupt_weights(capsys, cli_runs, tmp_path):
    run = Path(shutil.copytree(cli_runs["smt"], tmp_path / "run"))
    weights = checkpoint_dir(run) / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    assert_one_line_error(*run_cli(capsys, "eval", run, "--device", "cpu"), WEIGHTS_FILE, "corrupt")


def test_eval_with_zero_batches(capsys, cli_runs):
    assert_one_line_error(*run_cli(capsys, "eval", cli_runs["smt"], "--batches", 0, "--device", "cpu"), "--batches")


@pytest.mark.parametrize(
    "prompt, names", [("1,99", ["99", "vocabulary"]), ("1,-1", ["-1"]), ("1,x", ["--prompt", "1,x"])]
)
def test_sample_with_a_bad_prompt(capsys, cli_runs, prompt, names):
    argv = ["sample", cli_runs["smt"], "--prompt", prompt, "--length", 3, "--device", "cpu"]
    assert_one_line_error(*run_cli(capsys, *argv), *names)


def test_sample_with_a_negative_length(capsys, cli_runs):
    argv = ["sample", cli_runs["smt"], "--prompt", "1", "--length", -1, "--device", "cpu"]
    assert_one_line_error(*run_cli(capsys, *argv), "--length")


def test_train_into_an_existing_run_without_resume(capsys, cli_runs, tmp_path):
    run = Path(shutil.copytree(cli_runs["smt"], tmp_path / "run"))
    before = snapshot(run)
    assert_one_line_error(*run_cli(capsys, *TRAIN, "--method", "smt", "--out", run), str(run), "--resume")
    assert snapshot(run) == before


def test_train_with_resume_continues_an_existing_run(capsys, cli_runs, tmp_path):
    run = Path(shutil.copytree(cli_runs["smt"], tmp_path / "run"))
    argv = [*TRAIN, "--method", "smt", "--out", run, "--resume", "--steps", 7]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert json.loads((checkpoint_dir(run) / "config.json").read_text())["step"] == 7


@pytest.mark.parametrize(
    "extra, steps",
    [([], 10**12), (["--steps", "50"], 50), (["--set", "train.steps=7"], 7)],
)
def test_a_budget_alone_is_what_ends_the_run(extra, steps, capsys):
    """--budget without a step count is the budget: the preset's steps (recipe: 3000) no longer end it first."""
    code, out, err = run_cli(capsys, "train", "--preset", "recipe", "--budget", 600, *extra, "--print-config")
    assert code == 0, err
    assert json.loads(out)["train"]["steps"] == steps


def test_a_run_with_a_budget_trains_past_the_presets_steps(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--preset", "debug", "--quiet", "--device", "cpu", "--budget", 1.5, "--set", "train.log_every=1"]
    code, _, err = run_cli(capsys, *argv, "--out", out)
    assert code == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "step" in r]
    assert max(steps) > 40 and max(r.get("elapsed", 0) for r in records) >= 1.4  # debug's 40 steps, passed


def test_ctrl_c_while_the_command_line_imports_is_one_line(monkeypatch, capsys):
    """The console script imports torch after it starts; an interrupt there is one line and exit 130."""
    import importlib.abc
    import sys

    from smtrnn.__main__ import run

    class InterruptedImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "smtrnn.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "smtrnn.cli")
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    assert run() == 130
    assert capsys.readouterr().err == "smtrnn: interrupted\n"


@pytest.mark.parametrize("budget, seconds", [("600", 600.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)])
def test_train_reads_a_budget_as_compare_and_demo_do(budget, seconds, capsys):
    code, out, err = run_cli(capsys, "train", "--preset", "debug", "--budget", budget, "--print-config")
    assert code == 0 and json.loads(out)["train"]["max_seconds"] == seconds, err
