"""Fault injection: what a hostile environment does to ftx, and what ftx leaves behind.

Each test injects one fault (a folder that is not a run, a read-only or full disk, a damaged file,
a signal at a phase of the run) and asserts the one-line message naming the cause, the exit code,
no traceback on stderr, and what is left on disk. Everything runs in-process through the CLI
(``click.testing.CliRunner``) on the test-sized built-in model.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from ftx.cli import main
from ftx.testing import tiny_recipe, write_tiny_dataset

# -- helpers -----------------------------------------------------------------------------------


def cli(*args: Any) -> Result:
    """Run ``ftx ARGS`` in this process; stdout and stderr are kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_failure(result: Result, code: int, *fragments: str) -> str:
    """Exit ``code``, no traceback, one ``error:`` line holding every fragment; returns that line."""
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.stderr}\n{result.exception!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    text = result.stderr[result.stderr.index("error:"):]
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its hash: what 'left untouched' means."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def recipe_file(tmp_path: Path, ftx_home: Path) -> Callable[..., Path]:
    """``recipe_file(**tables)`` → a tiny recipe on 24 alpaca rows, written next to its data."""
    data = write_tiny_dataset(tmp_path / "train.jsonl", "alpaca", 24)

    def write(name: str = "recipe.toml", data_file: Path | str = data, **tables: Any) -> Path:
        import tomli_w

        path = tmp_path / name
        path.write_text(tomli_w.dumps(tiny_recipe(data_file, **tables)), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, ftx_home: Path) -> tuple[Path, Path]:
    """A recipe and the run folder it finished (two steps, loss evaluator), shared by the module."""
    import tomli_w

    tmp = tmp_path_factory.mktemp("finished")
    data = write_tiny_dataset(tmp / "train.jsonl", "alpaca", 24)
    recipe = tmp / "recipe.toml"
    recipe.write_text(tomli_w.dumps(tiny_recipe(data, evaluators=["loss"])), encoding="utf-8")
    result = cli("run", recipe, "--output", tmp / "run")
    assert result.exit_code == 0, result.stderr
    return recipe, tmp / "run"


def copy_run(finished_run: tuple[Path, Path], tmp_path: Path) -> Path:
    out = tmp_path / "run-copy"
    shutil.copytree(finished_run[1], out)
    return out


# -- 0. never delete what ftx did not write ----------------------------------------------------


def test_resume_into_a_folder_that_is_not_a_run_is_refused_and_its_files_survive(recipe_file, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    result = cli("run", recipe_file(), "--output", folder, "--resume")
    assert_clean_failure(result, 2, "refusing to resume in", str(folder), "not an ftx run folder")
    assert snapshot(folder) == {"thesis.tex": hashlib.sha256(b"years of work").hexdigest()}


@pytest.mark.parametrize("lock", [None, "user = 'my own lock file'\n", b"\xff\xfe not toml"])
def test_overwrite_refuses_a_folder_ftx_did_not_write(recipe_file, tmp_path, lock):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    if lock is not None:
        (folder / "recipe.lock.toml").write_bytes(lock if isinstance(lock, bytes) else lock.encode())
    before = snapshot(folder)
    result = cli("run", recipe_file(), "--output", folder, "--overwrite")
    assert_clean_failure(result, 2, "refusing to overwrite", str(folder))
    assert snapshot(folder) == before


def test_a_failing_overwrite_leaves_the_previous_run_intact(finished_run, recipe_file, tmp_path):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    assert "metrics.json" in before and "model/model.safetensors" in before
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "no output"}\n' * 12)  # every row unusable
    result = cli("run", recipe_file("bad.toml", data_file=bad), "--output", run, "--overwrite")
    assert_clean_failure(result, 2, "no usable rows")
    assert snapshot(run) == before


def test_overwrite_of_a_run_replaces_it(finished_run, recipe_file, tmp_path):
    run = copy_run(finished_run, tmp_path)
    (run / "checkpoints" / "checkpoint-99").mkdir(parents=True)
    result = cli("run", recipe_file(steps=1), "--output", run, "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert not (run / "checkpoints" / "checkpoint-99").exists()
    assert json.loads((run / "metrics.json").read_text())["train"]


REMOTE = {"model": {"name": "builtin:tiny-llama", "trust_remote_code": True}}


@pytest.mark.parametrize("command", ["plan", "data preview", "eval"])
def test_every_command_that_loads_model_code_needs_the_flag(command, recipe_file, finished_run, tmp_path):
    recipe = recipe_file("remote.toml", **REMOTE)
    args = {"plan": ["plan", recipe], "data preview": ["data", "preview", recipe],
            "eval": ["eval", finished_run[1], "--recipe", recipe, "--output", tmp_path / "eval.json"]}[command]
    result = cli(*args)
    assert_clean_failure(result, 2, "model.trust_remote_code = true", "--trust-remote-code")
    assert not (tmp_path / "eval.json").exists()
    allowed = cli(*args, "--trust-remote-code")
    assert "--trust-remote-code" not in allowed.stderr, allowed.stderr


# -- 1. the environment fails: read-only and full disks, damaged files --------------------------


def _fails_for(prefix: Path, err: int) -> Callable[..., Any]:
    real = os.mkdir

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).startswith(str(prefix)):
            raise OSError(err, os.strerror(err), str(path))
        real(path, *args, **kwargs)

    return mkdir


def test_read_only_output_folder_is_one_line(recipe_file, tmp_path, monkeypatch):
    target = tmp_path / "ro" / "run"
    monkeypatch.setattr(os, "mkdir", _fails_for(tmp_path / "ro", errno.EROFS))
    result = cli("run", recipe_file(), "--output", target)
    assert_clean_failure(result, 1, str(tmp_path / "ro"), "read-only", "choose --output")
    assert not (tmp_path / "ro").exists()


def test_read_only_file_system_is_refused_before_any_work(recipe_file, tmp_path, monkeypatch):
    real = os.statvfs

    class ReadOnly:
        def __init__(self, stats: Any) -> None:
            self._stats = stats
            self.f_flag = stats.f_flag | os.ST_RDONLY

        def __getattr__(self, name: str) -> Any:
            return getattr(self._stats, name)

    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly(real(p)) if str(p).startswith(str(tmp_path)) else real(p))
    result = cli("run", recipe_file(), "--output", tmp_path / "out")
    assert_clean_failure(result, 1, "read-only", "choose --output")
    assert not (tmp_path / "out").exists()


def _no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[0]) if args else None)


def test_disk_full_while_writing_the_run_folder(recipe_file, tmp_path, monkeypatch):
    import ftx.runner

    monkeypatch.setattr(ftx.runner, "write_text_atomic", _no_space)
    out = tmp_path / "out"
    result = cli("run", recipe_file(), "--output", out)
    assert_clean_failure(result, 1, "no space left", str(out / "recipe.lock.toml"))
    assert not (out / "recipe.lock.toml").exists() and not (out / "metrics.json").exists()


def test_disk_full_during_the_run_and_for_error_txt_too(recipe_file, tmp_path, monkeypatch):
    import ftx.models.loading
    import ftx.rundir

    out = tmp_path / "out"
    monkeypatch.setattr(ftx.models.loading, "load_model",
                        lambda *a, **k: _no_space(out / "checkpoints" / "checkpoint-1" / "model.safetensors"))
    real_write = ftx.rundir.write_text_atomic

    def write(path: Path, text: str) -> None:  # the lock fits; then the disk is full, error.txt included
        if Path(path).name != "recipe.lock.toml":
            _no_space(path)
        real_write(path, text)

    monkeypatch.setattr(ftx.rundir, "write_text_atomic", write)
    result = cli("run", recipe_file(), "--output", out)
    assert_clean_failure(result, 1, "no space left", "checkpoint-1", "error.txt could not be written")
    assert sorted(p.name for p in out.iterdir()) == ["recipe.lock.toml"]


def test_truncated_model_file_at_eval_is_named(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = cli("eval", run)
    assert_clean_failure(result, 1, f"this model file is damaged: {weights}")
    assert not (run / "eval.json").exists()


@pytest.mark.parametrize("content", [b"[model\nname = ", b"\xff\xfe\x00garbage"])
def test_a_lock_file_that_does_not_parse(finished_run, tmp_path, content):
    run = copy_run(finished_run, tmp_path)
    run.joinpath("metrics.json").unlink()
    (run / "recipe.lock.toml").write_bytes(content)
    before = snapshot(run)
    result = cli("run", finished_run[0], "--output", run, "--resume")
    assert_clean_failure(result, 2, str(run), "recipe.lock.toml is damaged")
    assert snapshot(run) == before
    evaluated = cli("eval", run)
    assert_clean_failure(evaluated, 2, "recipe.lock.toml")
    assert snapshot(run) == before


@pytest.mark.parametrize(("name", "message"), [
    ('""', "model.name: must name a model"),
    ('"   "', "model.name: must name a model"),
    ("5", "model.name: input should be a valid string"),
    ("[]", "model.name: input should be a valid string"),
])
def test_empty_or_non_string_model_name_fails_validation(recipe_file, name, message):
    recipe = recipe_file()
    text = recipe.read_text().replace('name = "builtin:tiny-llama"', f"name = {name}")
    recipe.write_text(text)
    assert_clean_failure(cli("validate", recipe), 2, message)


@pytest.mark.parametrize("train", ['""', "[]", '["  "]'])
def test_empty_data_train_fails_validation(recipe_file, train):
    recipe = recipe_file()
    text = recipe.read_text()
    start = text.index("train = ", text.index("[data]"))
    recipe.write_text(text[:start] + f"train = {train}" + text[text.index("\n", start):])
    assert_clean_failure(cli("validate", recipe), 2, "data.train: must name the data")


def test_plan_of_a_hub_model_offline_is_one_line(recipe_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = recipe_file("hub.toml", model={"name": "nobody-ftx-test/no-such-model"}, method="lora")
    result = cli("plan", recipe)
    line = assert_clean_failure(result, 1, "cannot read the config of model 'nobody-ftx-test/no-such-model'")
    assert result.stderr.strip() == line


# -- 2. damaged data files are named ------------------------------------------------------------


def _jsonl_lines(count: int = 40) -> bytes:
    rows = [json.dumps({"instruction": f"say {i}", "output": str(i)}) for i in range(count)]
    return ("\n".join(rows) + "\n").encode()


DAMAGED: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "binary as jsonl": ("data.jsonl", lambda p: p.write_bytes(bytes(range(256)) * 8),
                        ("is a binary file, not JSON", "NUL byte at byte offset 0")),
    "directory": ("data.jsonl", lambda p: p.mkdir(), ("is a folder, not a data file",)),
    "parquet that is not": ("data.parquet", lambda p: p.write_bytes(_jsonl_lines()),
                            ("is not a", "Parquet file")),
    "gz that is not gzip": ("data.jsonl.gz", lambda p: p.write_bytes(_jsonl_lines()),
                            ("is not gzip-compressed",)),
    "truncated gzip": ("data.jsonl.gz", lambda p: p.write_bytes(gzip.compress(_jsonl_lines(2000))[:300]),
                       ("damaged or truncated gzip data",)),
    "non-utf8 csv": ("data.csv", lambda p: p.write_bytes(b"instruction,output\n" + b"a,b\n" * 40 + b"caf\xe9,x\n"),
                     ("not UTF-8 text (line 42, byte 0xe9 at byte offset 182)",)),
    "deeply nested json": ("data.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
                           ("nested too deeply",)),
}


SEEN_BY_VALIDATE = ("binary as jsonl", "directory", "parquet that is not", "gz that is not gzip")


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_data_is_named_at_preview_validate_and_run(case, recipe_file, tmp_path):
    name, damage, fragments = DAMAGED[case]
    path = tmp_path / name
    damage(path)
    recipe = recipe_file("damaged.toml", data_file=path)
    preview = cli("data", "preview", recipe)
    assert_clean_failure(preview, 2, str(path), *fragments)
    validated = cli("validate", recipe)
    if case in SEEN_BY_VALIDATE:  # from the file's first bytes; the others need reading it through
        assert_clean_failure(validated, 2, "data.train", *fragments)
    else:
        assert validated.exit_code == 0, validated.stderr
    run = cli("run", recipe, "--output", tmp_path / "out")
    assert_clean_failure(run, 2, str(path), *fragments)
    assert not (tmp_path / "out").exists()


def test_a_non_utf8_byte_in_jsonl_names_its_line_and_offset(recipe_file, tmp_path):
    data = bytearray(_jsonl_lines())
    offset = data.index(b"say 7") + 1
    data[offset] = 0xFF
    path = tmp_path / "data.jsonl"
    path.write_bytes(bytes(data))
    preview = cli("data", "preview", recipe_file(data_file=path), "-n", "0")
    assert preview.exit_code == 0, preview.stderr
    assert f"{path}, row 8: unreadable row: not UTF-8 text (byte 0xff at byte offset {offset} of the file)" in preview.stdout
    strict = cli("data", "preview", recipe_file("strict.toml", data_file=path, data={"strict": True}))
    assert_clean_failure(strict, 2, f"{path}, row 8", f"byte offset {offset}")


def test_a_deeply_nested_jsonl_row_is_dropped_by_name(recipe_file, tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"instruction": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n" + _jsonl_lines())
    preview = cli("data", "preview", recipe_file(data_file=path), "-n", "0")
    assert preview.exit_code == 0, preview.stderr
    assert f"{path}, row 1: unreadable row: JSON nested too deeply" in preview.stdout


def test_a_recipe_that_is_not_utf8(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_bytes(b'[model]\nname = "caf\xe9"\n')
    result = cli("validate", recipe)
    assert_clean_failure(result, 2, f"{recipe} is not UTF-8 text (byte 0xe9 at byte offset 19, line 2)")


# -- 3. signals at every phase ------------------------------------------------------------------


@pytest.fixture
def no_default_sigterm() -> Iterator[None]:
    """Should a handler be missing, SIGTERM fails the test instead of killing pytest."""

    class SignalEscaped(Exception):
        pass

    def escaped(_signum: int, _frame: Any) -> None:
        raise SignalEscaped("SIGTERM reached the test's fallback handler: the run had none")

    previous = signal.signal(signal.SIGTERM, escaped)
    yield
    signal.signal(signal.SIGTERM, previous)


def _sigterm(times: int = 1) -> None:
    for _ in range(times):
        os.kill(os.getpid(), signal.SIGTERM)


def _inject(monkeypatch: pytest.MonkeyPatch, phase: str, times: int = 1) -> None:
    """Send SIGTERM to this process as the run enters ``phase`` (once)."""
    import ftx.data.prepare
    import ftx.evaluation
    import ftx.models.loading
    import ftx.runner

    fired: list[bool] = []

    def once(wrapped: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if not fired:
                fired.append(True)
                _sigterm(times)
            return wrapped(*args, **kwargs)

        return call

    if phase == "data":
        monkeypatch.setattr(ftx.data.prepare, "prepare_examples", once(ftx.data.prepare.prepare_examples))
    elif phase == "loading":
        monkeypatch.setattr(ftx.models.loading, "load_model", once(ftx.models.loading.load_model))
    elif phase == "before":
        monkeypatch.setattr(ftx.evaluation.Review, "before", once(ftx.evaluation.Review.before))
    elif phase == "after":
        monkeypatch.setattr(ftx.evaluation.Review, "after", once(ftx.evaluation.Review.after))
    elif phase == "saving":
        monkeypatch.setattr(ftx.runner, "replace_dir", once(ftx.runner.replace_dir))
    elif phase == "checkpoint":  # as a checkpoint's files are written, before its manifest seals it
        import ftx.checkpoints

        monkeypatch.setattr(ftx.checkpoints, "write_manifest", once(ftx.checkpoints.write_manifest))
    elif phase == "training":
        real = ftx.runner.Run.log_metrics

        def log_metrics(self: Any, metrics: Any, step: int) -> None:
            real(self, metrics, step)
            if step >= 1 and not fired:
                fired.append(True)
                _sigterm(times)

        monkeypatch.setattr(ftx.runner.Run, "log_metrics", log_metrics)
    else:  # pragma: no cover
        raise ValueError(phase)


SIGNAL_RECIPE = {"evaluators": ["loss"], "steps": 4, "train": {"save_every": 2}}


@pytest.fixture(scope="module")
def straight_metrics(tmp_path_factory: pytest.TempPathFactory, ftx_home: Path) -> dict[str, Any]:
    import tomli_w

    tmp = tmp_path_factory.mktemp("straight")
    data = write_tiny_dataset(tmp / "train.jsonl", "alpaca", 24)
    recipe = tmp / "recipe.toml"
    recipe.write_text(tomli_w.dumps(tiny_recipe(data, **SIGNAL_RECIPE)), encoding="utf-8")
    result = cli("run", recipe, "--output", tmp / "run")
    assert result.exit_code == 0, result.stderr
    return json.loads((tmp / "run" / "metrics.json").read_text())


@pytest.mark.parametrize("phase", ["data", "loading", "before", "training", "checkpoint", "after", "saving"])
def test_sigterm_at_each_phase_exits_130_and_resume_finishes_the_same(
    phase, recipe_file, tmp_path, monkeypatch, straight_metrics, no_default_sigterm
):
    recipe = recipe_file(**SIGNAL_RECIPE)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _inject(patch, phase)
        result = cli("run", recipe, "--output", out)
    assert_clean_failure(result, 130, "stopped" if phase in ("training", "checkpoint") else "interrupted")
    assert not (out / "metrics.json").exists() and not (out / "error.txt").exists()
    if phase in ("training", "checkpoint"):
        assert list((out / "checkpoints").glob("checkpoint-*/ftx-checkpoint.json"))
    again = cli("run", recipe, "--output", out, *(["--resume"] if out.exists() else []))
    assert again.exit_code == 0, again.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["before"] == straight_metrics["before"]
    assert metrics["after"] == straight_metrics["after"]


def test_a_second_sigterm_aborts_without_saving(recipe_file, tmp_path, monkeypatch, no_default_sigterm):
    recipe = recipe_file(steps=4)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _inject(patch, "training", times=2)
        result = cli("run", recipe, "--output", out)
    assert_clean_failure(result, 130, "aborted on a second signal", "without saving")
    assert not list((out / "checkpoints").glob("checkpoint-*")) if (out / "checkpoints").exists() else True
    assert not (out / "metrics.json").exists() and not (out / "model").exists()
    resumed = cli("run", recipe, "--output", out, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "no complete checkpoint to resume from: starting over" in resumed.stderr


def test_one_sigterm_during_training_saves_a_checkpoint(recipe_file, tmp_path, monkeypatch, no_default_sigterm):
    recipe = recipe_file(steps=4)
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _inject(patch, "training")
        result = cli("run", recipe, "--output", out)
    assert_clean_failure(result, 130, "stopped on request after saving", "--resume")
    assert list((out / "checkpoints").glob("checkpoint-*/ftx-checkpoint.json"))


# -- 4. caches and data that would be trusted wrongly -------------------------------------------


@pytest.mark.parametrize("damage", ["cut ids", "cut offsets", "grown labels", "no manifest sizes"])
def test_a_damaged_data_cache_entry_is_rebuilt_not_used(damage, tmp_path, monkeypatch, ftx_home, tiny_tokenizer):
    from ftx.data.cache import tokenize_cached
    from ftx_hookspecs import ChatExample

    monkeypatch.setenv("FTX_HOME", str(tmp_path / "home"))
    examples = [ChatExample([{"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"{i} " * (i + 1)}])
                for i in range(12)]
    first = tokenize_cached(tiny_tokenizer, examples[:9], examples[9:], max_length=64)
    assert not first.hit and first.path is not None
    folder = first.path
    if damage == "cut ids":
        ids = folder / "train.ids"
        ids.write_bytes(ids.read_bytes()[:-8])
    elif damage == "cut offsets":
        offsets = folder / "eval.offsets"
        offsets.write_bytes(offsets.read_bytes()[:-8])
    elif damage == "grown labels":
        with open(folder / "train.labels", "ab") as handle:
            handle.write(b"\0" * 8)
    else:
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest.pop("sizes")
        (folder / "manifest.json").write_text(json.dumps(manifest))
    again = tokenize_cached(tiny_tokenizer, examples[:9], examples[9:], max_length=64)
    assert not again.hit
    assert [t.input_ids for t in again.train] == [t.input_ids for t in first.train]
    assert [t.labels for t in again.eval] == [t.labels for t in first.eval]
    third = tokenize_cached(tiny_tokenizer, examples[:9], examples[9:], max_length=64)
    assert third.hit  # the rebuilt entry is whole again


def test_duplicate_rows_never_land_in_both_train_and_eval():
    from ftx.data.prepare import example_key, split_held_out
    from ftx_hookspecs import ChatExample

    def example(i: int) -> ChatExample:
        return ChatExample([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                           meta={"source": f"f.jsonl:{i}"})

    rows = [example(i) for i in range(40)] + [example(i) for i in range(10)]  # rows 0-9 appear twice
    for seed in range(20):
        train, held, leaked = split_held_out(rows, 0.2, seed)
        assert len(held) == 10 and len(train) == 40 and leaked == 0  # the sizes a fraction asks for
        assert not {example_key(e) for e in train} & {example_key(e) for e in held}
    unique = [example(i) for i in range(40)]
    assert split_held_out(unique, 0.2, 7)[2] == 0
    train, held, leaked = split_held_out([example(1)] * 10, 0.2, 0)  # nothing unique to swap in: counted
    assert (len(train), len(held), leaked) == (8, 2, 2)


def test_max_length_beyond_the_models_positions_is_refused_before_training(recipe_file, tmp_path):
    recipe = recipe_file(data={"max_length": 4096})
    out = tmp_path / "out"
    result = cli("run", recipe, "--output", out)
    assert_clean_failure(result, 2, "data.max_length: 4096 is beyond the 512 positions", "set data.max_length to 512")
    assert not (out / "metrics.json").exists() and not (out / "checkpoints").exists()


@pytest.mark.parametrize("error", [
    RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })"),
    RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"),
])
def test_disk_full_inside_a_library_is_named(error, recipe_file, tmp_path, monkeypatch):
    import ftx.models.loading

    out = tmp_path / "out"

    def fail(*_a: Any, **_k: Any) -> None:
        if "unexpected pos" in str(error):  # torch's writer: the OS error is its cause
            raise error from OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "model.safetensors"))
        raise error

    monkeypatch.setattr(ftx.models.loading, "load_model", fail)
    result = cli("run", recipe_file(), "--output", out)
    assert_clean_failure(result, 1, "run failed:", "free some space", f"traceback in {out / 'error.txt'}")
    assert (out / "error.txt").is_file() and not (out / "metrics.json").exists()


def test_answers_cut_at_max_length_are_counted_and_warned_about(tiny_tokenizer):
    from types import SimpleNamespace

    from ftx.data.cache import cut_answers, tokenize_prepared
    from ftx.data.prepare import DataReport
    from ftx.data.encode import tokenize_all
    from ftx_hookspecs import ChatExample

    def chat(answer: str) -> ChatExample:
        return ChatExample([{"role": "user", "content": "count"}, {"role": "assistant", "content": answer}])

    short, long = chat("one"), chat("one two three four five six seven eight nine ten " * 4)
    whole = tokenize_all(tiny_tokenizer, [short], 10_000)[0]
    exact = len(whole.input_ids) - 1  # the short answer ends at the limit with its end-of-turn token
    tokens = tokenize_all(tiny_tokenizer, [short, long, long], exact)
    assert cut_answers(tokens, exact, tiny_tokenizer) == 2
    messages: list[str] = []
    data = SimpleNamespace(train=[short, long, long], eval=[], report=DataReport(kept=3))
    tokenize_prepared(data, tiny_tokenizer, {"max_length": exact, "cache": False}, "assistant", echo=messages.append)
    assert any(m.startswith("warning: 2 of 3 training examples end inside an answer cut at data.max_length")
               for m in messages), messages


def test_two_signals_delivered_as_one_still_abort():
    from types import SimpleNamespace

    from ftx.runner import RunSignals

    messages: list[str] = []
    signals = RunSignals(messages.append)
    signals.run = SimpleNamespace(stop_requested=False)  # type: ignore[assignment]
    signals.training = True
    with signals.installed():
        assert signals._pipe is not None
        # what Python's C-level handler leaves when two SIGTERMs arrive before the Python handler runs once
        os.write(signals._pipe[1], bytes([signal.SIGTERM, signal.SIGTERM]))
        with pytest.raises(KeyboardInterrupt):
            signals._handle(signal.SIGTERM, None)
    assert signals.aborted and not messages
    single = RunSignals(messages.append)
    single.run = SimpleNamespace(stop_requested=False)  # type: ignore[assignment]
    single.training = True
    with single.installed():
        os.write(single._pipe[1], bytes([signal.SIGTERM]))
        single._handle(signal.SIGTERM, None)  # the first one asks for a checkpoint and a stop
    assert single.run.stop_requested and not single.aborted and "saving a checkpoint" in messages[0]


@pytest.mark.slow
def test_sigterm_to_a_real_process_before_training_exits_130_and_resumes(recipe_file, tmp_path):
    import subprocess
    import sys

    recipe = recipe_file(evaluators=["loss", "exact-match"], steps=2)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ftx.cli", "run", str(recipe), "--output", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # the model line comes right before the 'before' evaluation
        lines.append(line)
        if line.startswith("model: "):
            proc.send_signal(signal.SIGTERM)
            break
    _, rest = proc.communicate(timeout=300)
    stderr = "".join(lines) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    assert (out / "recipe.lock.toml").is_file() and not (out / "metrics.json").exists()
    again = subprocess.run([sys.executable, "-m", "ftx.cli", "run", str(recipe), "--output", str(out), "--resume"],
                           check=False, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (out / "metrics.json").is_file()


def test_sigterm_during_another_command_exits_130(finished_run, tmp_path, monkeypatch, no_default_sigterm):
    run = copy_run(finished_run, tmp_path)
    _inject(monkeypatch, "data")  # `ftx eval` prepares the held-out split first
    result = cli("eval", run)
    assert result.exit_code == 130, result.stderr
    assert "Traceback" not in result.stderr and "interrupted" in result.stderr
    assert not (run / "eval.json").exists()


def test_truncated_adapter_file_at_eval_is_named(recipe_file, tmp_path):
    run = tmp_path / "lora-run"
    done = cli("run", recipe_file("lora.toml", method={"use": "lora", "r": 4}, steps=1, evaluators=["loss"]),
               "--output", run)
    assert done.exit_code == 0, done.stderr
    (adapter,) = (run / "model").glob("*.safetensors")
    adapter.write_bytes(adapter.read_bytes()[:100])
    result = cli("eval", run)
    assert_clean_failure(result, 1, f"this model file is damaged: {adapter}")
    assert not (run / "eval.json").exists()


def test_a_component_crashing_while_data_is_prepared_is_one_line(finished_run, recipe_file, tmp_path, monkeypatch):
    import ftx.data.prepare

    def crash(*_a: Any, **_k: Any) -> None:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(ftx.data.prepare, "prepare_examples", crash)
    fresh = tmp_path / "fresh"
    result = cli("run", recipe_file(), "--output", fresh)
    assert_clean_failure(result, 1, "preparing data failed: TypeError: unhashable type", str(fresh / "error.txt"))
    assert "TypeError" in (fresh / "error.txt").read_text()
    run = copy_run(finished_run, tmp_path)  # an --overwrite that fails this early leaves the old run as it was
    before = snapshot(run)
    result = cli("run", recipe_file(), "--output", run, "--overwrite")
    assert_clean_failure(result, 1, "preparing data failed", f".{run.name}.error-")
    assert snapshot(run) == before


@pytest.mark.parametrize("case", SEEN_BY_VALIDATE)
def test_the_reader_names_what_validation_sniffs(case, tmp_path):
    from ftx.data.sources import read_file
    from ftx.errors import DataError

    name, damage, _ = DAMAGED[case]
    path = tmp_path / name
    damage(path)
    expected = {"binary as jsonl": "is a binary file, not JSON lines text (NUL byte at byte offset 0, line 1)",
                "directory": "is a folder, not a data file", "parquet that is not": "is not a readable Parquet file",
                "gz that is not gzip": "is not gzip-compressed"}[case]
    with pytest.raises(DataError, match=re.escape(f"{path} {expected}")):
        list(read_file(path))


def test_loading_a_trained_run_honours_the_remote_code_gate(recipe_file, tmp_path):
    from ftx.errors import RecipeError
    from ftx.trained import load_trained

    run = tmp_path / "remote-lora"
    recipe = recipe_file("remote-lora.toml", method={"use": "lora", "r": 4}, steps=1, **REMOTE)
    refused = cli("run", recipe, "--output", run)
    assert_clean_failure(refused, 2, "--trust-remote-code")
    assert not run.exists()
    done = cli("run", recipe, "--output", run, "--trust-remote-code")
    assert done.exit_code == 0, done.stderr
    with pytest.raises(RecipeError, match="--trust-remote-code"):
        load_trained(run, device="cpu")  # what export, chat, generate and serve call
    assert load_trained(run, device="cpu", trust_remote_code=True).model is not None
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a b c"}\n', encoding="utf-8")
    args = ("generate", run, "--input", prompts, "--output", tmp_path / "out.jsonl", "--max-tokens", "4")
    assert_clean_failure(cli(*args), 2, "--trust-remote-code")  # the deploy commands take the same gate
    allowed = cli(*args, "--trust-remote-code")
    assert allowed.exit_code == 0, allowed.stderr
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8").count("\n") == 1


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs (needs the right to mount: root in a container); skipped where it cannot be made."""
    import subprocess

    mount = tmp_path / "tinyfs"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)


def test_a_really_full_disk_is_one_line_and_leaves_no_half_saved_model(recipe_file, tiny_filesystem):
    out = tiny_filesystem / "run"
    result = cli("run", recipe_file(), "--output", out)  # the lock fits; the model (about 430 KB) does not
    assert_clean_failure(result, 1, "the disk is full", "No space left on device", "choose --output on another disk")
    assert not (out / "metrics.json").exists() and not (out / ".model.tmp").exists() and not (out / "model").exists()
    assert (out / "recipe.lock.toml").is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "recipe.lock.toml").stat().st_mode & 0o777 == 0o666 & ~umask  # not private like a temp file


def test_a_really_read_only_disk_is_refused_before_any_work(recipe_file, tiny_filesystem):
    import subprocess

    remounted = subprocess.run(["mount", "-o", "remount,ro", str(tiny_filesystem)], capture_output=True, check=False)
    if remounted.returncode != 0:
        pytest.skip("cannot remount read-only here")
    result = cli("run", recipe_file(), "--output", tiny_filesystem / "run")
    assert_clean_failure(result, 1, f"{tiny_filesystem / 'run'} is on a read-only file system", "choose --output")
    assert list(tiny_filesystem.iterdir()) == []


def test_a_failing_pipeline_overwrite_leaves_the_previous_run_intact(recipe_file, tmp_path):
    import tomli_w

    previous = tmp_path / "pipeline-run"
    (previous / "sft").mkdir(parents=True)
    (previous / "recipe.lock.toml").write_text(tomli_w.dumps({"pipeline": {"stages": ["sft", "second"]}}))
    (previous / "metrics.json").write_text('{"status": "complete"}')
    (previous / "sft" / "notes.txt").write_text("results of last week")
    before = snapshot(previous)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "no output"}\n' * 12)
    recipe = recipe_file("pipeline.toml")
    text = recipe.read_text() + (f'\n[[stages]]\nname = "sft"\n\n[[stages]]\nname = "second"\n'
                                 f'model = {{name = "stage:sft"}}\ndata = {{train = "{bad}"}}\n')
    recipe.write_text(text)
    result = cli("run", recipe, "--output", previous, "--overwrite")
    assert_clean_failure(result, 2, "no usable rows")
    assert snapshot(previous) == before


@pytest.mark.parametrize("name", ["data.jsonl", "data.csv", "data.json"])
def test_a_utf8_bom_from_a_windows_editor_is_not_a_bad_row(name, tmp_path):
    from ftx.data.sources import read_file

    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}]
    text = {"data.jsonl": "\r\n".join(json.dumps(r) for r in rows) + "\r\n",
            "data.csv": "instruction,output\r\na,b\r\nc,d\r\n", "data.json": json.dumps(rows)}[name]
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert [r.data for r in read_file(path)] == rows


def test_a_recipe_saved_with_a_bom_validates(recipe_file):
    recipe = recipe_file()
    recipe.write_bytes(b"\xef\xbb\xbf" + recipe.read_bytes())
    result = cli("validate", recipe)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "config.json"])
def test_a_damaged_json_file_of_the_model_is_named_at_eval(name, finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    damaged = run / "model" / name
    damaged.write_text('{"cut off')
    result = cli("eval", run)
    assert_clean_failure(result, 1, f"this model file is damaged: {damaged}")
    assert not (run / "eval.json").exists()
