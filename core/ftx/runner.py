"""The run: the seven steps of fine-tuning, in order, with the run folder written as it goes.

task and model (recipe) → data (format plugin) → method (plugin) → evaluate before (evaluator
plugins) → train (objective plugin) → evaluate after → save and report (the run folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import __version__
from .context import Run
from .distributed import is_main
from .errors import FtxError, Problem, RecipeError, RunError, RunInterrupted
from .layout import CHECKPOINTS, ERROR, HISTORY, METRICS, MODEL, RunFolder
from .library_log import library_logs_to
from .plugins import FtxPluginManager
from .recipe import Recipe
from .recipe.toml_io import dumps, loads
from .rundir import (
    ENV_ERRNOS,
    MARKER,
    check_run_dir,
    clear_run_dir,
    make_run_dir,
    os_error_message,
    replace_dir,
    write_error_file,
    write_json,
    write_text_atomic,
)

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "accelerate", "tokenizers", "pluggy", "pydantic")


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def lock_data(recipe: Recipe, manager: FtxPluginManager) -> dict[str, Any]:
    """The resolved recipe plus what produced it: versions of ftx, its plugins and libraries, the seed."""
    data = recipe.to_dict()
    plugins = {}
    for sel in recipe.selected():
        prov = sel.provenance
        plugins[f"{sel.spec.kind}:{sel.name}"] = f"{prov.distribution or prov.plugin} {prov.version or ''}".strip()
    for _path, name in recipe.nested_uses():  # rewards inside an objective's or evaluator's options
        for kind, table in manager.registry.components.items():
            if name in table and kind != "command":
                prov = table[name].provenance
                plugins[f"{kind}:{name}"] = f"{prov.distribution or prov.plugin} {prov.version or ''}".strip()
                break
    data["ftx"] = {
        "version": __version__,
        "hookspecs": _version("ftx-hookspecs"),
        "python": platform.python_version(),
        "seed": recipe.train.seed,
        "recipe_file": str(recipe.path) if recipe.path else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "components": plugins,
        "libraries": {name: v for name in LIBRARIES if (v := _version(name))},
    }
    return data


def evaluate_all(evaluators: list[tuple[str, Any]], model: Any, run: Run, label: str) -> dict[str, dict[str, float]]:
    """Run every evaluator on the held-out split; one entry per evaluator name (see :mod:`ftx.evaluation`)."""
    from .evaluation import evaluate_all as evaluate

    return evaluate(evaluators, model, run.data.eval, run, label)


def _unique_names(recipe: Recipe) -> list[str]:
    names: list[str] = []
    for sel in recipe.evaluators:
        name = sel.name
        n = 2
        while name in names:
            name = f"{sel.name}-{n}"
            n += 1
        names.append(name)
    return names


def run_recipe(
    recipe: Recipe,
    manager: FtxPluginManager,
    *,
    output: Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    trust_remote_code: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run a validated recipe end to end and return what ``metrics.json`` holds.

    Nothing on disk is touched until the recipe's data is prepared: a run that fails that early leaves
    an ``--overwrite``-n run folder as it was. SIGTERM/SIGINT at any phase end in :class:`RunInterrupted`.
    """
    from .models.loading import check_remote_code

    check_remote_code(recipe.model, trust_remote_code)
    target = Path(output) if output else Path(recipe.output.dir)
    if not is_main():
        return _run_worker(recipe, manager, target.expanduser().resolve(), resume)
    run_dir = check_run_dir(target, overwrite=overwrite, resume=resume)
    lock_path = run_dir / MARKER
    resuming = resume and lock_path.exists()
    if resuming:
        check_same_recipe(lock_path, lock_data(recipe, manager))
        if (run_dir / METRICS).exists():
            echo(f"{run_dir} is already complete; nothing to resume")
            return _read_metrics(run_dir / METRICS)
    signals = RunSignals(echo)
    with signals.installed():
        try:
            inputs = _inputs(recipe, signals)  # before the folder is touched: a bad data file leaves it as it was
            signals.phase = "creating the run folder"
            try:
                if overwrite:
                    clear_run_dir(run_dir)
                make_run_dir(run_dir)
                resume_from = None
                if resuming:
                    from .checkpoints import latest_complete

                    resume_from = latest_complete(run_dir / CHECKPOINTS, echo)
                    echo(f"resuming from {resume_from}" if resume_from
                         else "no complete checkpoint to resume from: starting over")
                else:
                    write_text_atomic(lock_path, dumps(lock_data(recipe, manager)))
                (run_dir / METRICS).unlink(missing_ok=True)
            except OSError as exc:
                raise RunError(os_error_message(exc)) from None
        except KeyboardInterrupt:
            raise signals.interrupted(recipe, run_dir, claimed=False) from None
        except FtxError:
            raise
        except Exception as exc:  # a component's bug while preparing: one line, the traceback kept
            raise _early_failure(exc, run_dir, signals.phase) from exc
        run = Run(recipe, run_dir, manager, echo_fn=echo, resume_from=resume_from)
        run.data = inputs.data
        signals.run = run
        manager.hook.run_start(run)
        started = time.perf_counter()
        try:
            with library_logs_to(RunFolder(run_dir).libraries):  # library warnings: to the run folder
                metrics = _steps(recipe, run, started, inputs, signals)
        except BaseException as exc:  # reported, then raised as one of ftx's errors
            error = _failure(exc, run, manager, signals)
            if error is exc:
                raise
            raise error from (None if isinstance(exc, KeyboardInterrupt) else exc)
    (run_dir / ERROR).unlink(missing_ok=True)
    manager.hook.run_end(run, metrics, None)
    return metrics


def _early_failure(exc: Exception, run_dir: Path, phase: str) -> RunError:
    """A failure before the run claimed its folder: the traceback goes to a fresh folder's ``error.txt``, or next
    to an existing run (which stays as it was) as ``.error-<pid>.txt`` in its parent."""
    environment = _environment_cause(exc, run_dir if run_dir.exists() else run_dir.parent)
    fresh = not run_dir.exists() or not any(run_dir.iterdir())
    target = run_dir / ERROR if fresh else run_dir.parent / f".{run_dir.name}.error-{os.getpid()}.txt"
    written = False
    with contextlib.suppress(Exception):
        if fresh:
            run_dir.mkdir(parents=True, exist_ok=True)
        written = write_error_file(target, "".join(traceback.format_exception(exc)))
    where = f"traceback in {target}" if written else "the traceback could not be written"
    if environment is not None:
        return RunError(f"{phase} failed: {environment} ({where})")
    first = (str(exc).strip().splitlines() or [""])[0]
    return RunError(f"{phase} failed: {type(exc).__name__}: {first} ({where})")


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is damaged ({exc}); delete it and run again with --resume") from None


def _failure(exc: BaseException, run: Run, manager: FtxPluginManager, signals: RunSignals) -> BaseException:
    """The error to raise for a failed run, after reporting it; never raises itself.

    The traceback goes to ``error.txt`` when it can be written; an interrupt leaves no ``error.txt``
    (the run is resumable, not failed) and becomes :class:`RunInterrupted`.
    """
    interrupted = isinstance(exc, (KeyboardInterrupt, RunInterrupted))
    error_file = run.run_dir / ERROR
    written = False
    with contextlib.suppress(Exception):  # a model half-saved is never used, and a full disk needs the room
        import shutil

        shutil.rmtree(run.run_dir / ".model.tmp", ignore_errors=True)
    if not interrupted:
        try:
            text = "".join(traceback.format_exception(exc))
        except Exception:  # noqa: BLE001 - an exception that cannot be formatted is still reported
            text = repr(exc)
        written = write_error_file(error_file, text)
    try:
        manager.hook.run_end(run, None, exc)
    except Exception as hook_exc:  # noqa: BLE001 - a logger failing now must not hide the run's own error
        with contextlib.suppress(Exception):
            run.echo(f"warning: a run_end hook failed: {type(hook_exc).__name__}: {hook_exc}")
    if isinstance(exc, KeyboardInterrupt):
        return signals.interrupted(run.recipe_obj, run.run_dir)
    if isinstance(exc, FtxError):
        return exc
    where = f"traceback in {error_file}" if written else "error.txt could not be written"
    environment = _environment_cause(exc, run.run_dir)
    if environment is not None:
        return RunError(f"run failed: {environment} ({where})")
    if isinstance(exc, Exception):
        try:
            first = (str(exc).strip().splitlines() or [""])[0]
        except Exception:  # noqa: BLE001
            first = ""
        return RunError(f"run failed: {type(exc).__name__}: {first} ({where})")
    return exc


_FULL_DISK_WORDS = ("no space left on device", "storagefull", "errno 28", "code: 28", "disk quota exceeded")


def _environment_cause(exc: BaseException, run_dir: Path) -> str | None:
    """One line for a failure the machine caused (full, read-only or forbidden disk), found anywhere in the
    exception's chain or in a library's message (torch and safetensors wrap the OS error in their own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in ENV_ERRNOS:
            return os_error_message(current)
        with contextlib.suppress(Exception):
            text = str(current).lower()
            if any(word in text for word in _FULL_DISK_WORDS) or ("write failed" in text and _disk_nearly_full(run_dir)):
                first = (str(current).strip().splitlines() or [""])[0][:160]
                return (f"the disk is full ({type(current).__name__}: {first}); free some space, or choose --output "
                        "on another disk")
        current = current.__cause__ or current.__context__
    return None


def _disk_nearly_full(path: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(path).free < 64 * 1024**2
    except OSError:
        return False


def _example_counts(data: Any) -> dict[str, int]:
    """Train and eval examples after every drop: tokenisation's (over-length, nothing to train) included."""
    tokenized = getattr(data, "tokenized", None) or {}
    return {"train": len(tokenized.get("train", data.train)), "eval": len(tokenized.get("eval", data.eval))}


def _run_worker(recipe: Recipe, manager: FtxPluginManager, run_dir: Path, resume: bool) -> dict[str, Any]:
    """Ranks other than 0 train alongside rank 0 and write nothing; they return no metrics."""
    from .checkpoints import latest_complete

    resume_from = latest_complete(run_dir / CHECKPOINTS, lambda _m: None) if resume else None
    signals = RunSignals(lambda _m: None)
    inputs = _inputs(recipe, signals)
    run = Run(recipe, run_dir, manager, echo_fn=lambda _m: None, resume_from=resume_from)
    run.data = inputs.data
    _steps(recipe, run, time.perf_counter(), inputs, signals)
    return {}


@dataclass
class _Inputs:
    """What a run prepares before it touches its folder: the device, kernels and data."""

    device: str
    kernels: list[tuple[str, Any]]
    data: Any


def _inputs(recipe: Recipe, signals: RunSignals) -> _Inputs:
    """Seed, device, kernels and the task's data (through the selected format); writes nothing to the run folder."""
    signals.phase = "loading libraries"
    from .training import quiet_libraries

    quiet_libraries()
    import torch

    from .data.prepare import prepare_examples
    from .training import choose_device

    train = recipe.train
    if train.threads:
        torch.set_num_threads(train.threads)
    torch.manual_seed(train.seed)
    device = choose_device(train)
    # kernels first: one that cannot run here (no GPU, library missing) fails before any work is done
    kernels = [(k.name, k.build()) for k in recipe.kernels]
    signals.phase = "preparing data"
    fmt = recipe.data_format.build()
    data = prepare_examples(recipe.data, fmt, train.seed)
    return _Inputs(device, kernels, data)


def _steps(recipe: Recipe, run: Run, started: float, inputs: _Inputs, signals: RunSignals) -> dict[str, Any]:
    from .figures import parameter_figures, peak_memory
    from .models.loading import class_labels, load_model, load_tokenizer, resolve_model_path

    run.device = inputs.device
    echo = run.echo
    kernels = inputs.kernels

    # 1-2. the task's data, prepared by :func:`_inputs` through the selected format
    report = run.data.report
    dropped = sum(report.dropped.values())
    echo(f"data: {len(run.data.train)} train, {len(run.data.eval)} eval examples ({recipe.data_format.name})"
         + (f"; {dropped} rows dropped: {dict(report.dropped)}" if dropped else ""))
    if report.mixed:
        from .data.mix import describe_mix

        echo(f"  {describe_mix(report)}")
    if report.duplicates:
        echo(f"warning: {report.duplicates} held-out examples equal a training example, so the held-out figures "
             "include examples trained on (deduplicate the data"
             + (")" if isinstance(recipe.data.eval, float) else " or data.eval's file)"))

    # 3. the method, objective and evaluators (their heavy code is imported only now)
    method = recipe.method.build()
    run.method = method
    objective = recipe.objective.build()
    evaluators = list(zip(_unique_names(recipe), [e.build() for e in recipe.evaluators]))

    # 4. the pre-trained model
    signals.phase = "loading the model"
    model_path = resolve_model_path(recipe.model, echo=echo)
    run.tokenizer = load_tokenizer(recipe.model, model_path)
    head = getattr(recipe.objective.spec, "model_head", "causal-lm")
    model = load_model(
        recipe.model, model_path, head=head, device=run.device, tokenizer=run.tokenizer,
        extra=method.load_kwargs(run), labels=class_labels(recipe, run.data) if head == "sequence-classification" else None,
    )
    check_positions(recipe, model)
    for name, kernel in kernels:
        model = kernel.apply(model, run)
        echo(f"kernels: {name}")
    model = method.apply(model, run)
    params = parameter_figures(model)
    echo(f"model: {recipe.model.name} on {run.device}; {params['trainable_params']:,} of "
         f"{params['total_params']:,} parameters trainable ({recipe.method.name})")

    # 5. evaluate before, train, evaluate after
    from .evaluation import Review

    main = is_main()
    review = Review(recipe, run, evaluators)
    signals.phase = "evaluating before training"
    before = review.before(model) if main else {}
    echo(f"training: {recipe.objective.name}")
    signals.phase = "training"
    result = _train_with_backoff(objective, model, run, signals)
    if run.stop_requested:
        raise RunInterrupted(
            f"stopped on request after saving the checkpoint {run.last_checkpoint or run.checkpoint_dir}; "
            f"continue with `ftx run {recipe.path or 'RECIPE'} --output {run.run_dir} --resume`"
        )
    if result.model is not None:
        model = result.model
    from .generation import forget_replies

    forget_replies(model)  # fused optimizers change weights without bumping the counters the cache is keyed on
    run.history = result.history
    if not main:
        return {}
    signals.phase = "evaluating after training"
    after = review.after(model)

    # 6. save the model with its tokenizer, chat template and generation config
    signals.phase = "saving the model"
    tmp = run.run_dir / ".model.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    method.save(model, tmp, run)
    run.tokenizer.save_pretrained(tmp)
    _write_generation_config(model, run.tokenizer, tmp)
    replace_dir(tmp, run.run_dir / MODEL)

    metrics: dict[str, Any] = {
        "before": before,
        "after": after,
        "train": {**result.metrics, "skipped_steps": float(run.skipped_steps),
                  "seconds": round(time.perf_counter() - started, 2)},
        "figures": {**params, **peak_memory(run.device)},
        "data": {**_example_counts(run.data), **report.as_dict()},
    }
    write_json(run.run_dir / HISTORY, run.history)
    signals.phase = "writing the report"
    return review.finish(metrics)  # baseline, forgetting, overfitting, gate; metrics.json and the report


def check_positions(recipe: Recipe, model: Any) -> None:
    """``data.max_length`` must fit the positions the model was built for (longer ones give garbage or fail)."""
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(positions, int) and recipe.data.max_length > positions:
        raise RecipeError(Problem(
            "data.max_length",
            f"{recipe.data.max_length} is beyond the {positions} positions of model {recipe.model.name!r}; "
            f"set data.max_length to {positions} or less",
        ))


def _write_generation_config(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save a generation config whose EOS ids include the end-of-turn token used in training."""
    from transformers import GenerationConfig

    from .generation import stop_token_ids

    base = getattr(model, "generation_config", None)
    config = GenerationConfig.from_dict(base.to_dict()) if base is not None else GenerationConfig()
    config.eos_token_id = stop_token_ids(tokenizer, model)
    config.pad_token_id = tokenizer.pad_token_id
    config.save_pretrained(folder)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def recipe_changes(lock_path: Path, current: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between a run's ``recipe.lock.toml`` and ``current`` (output and
    metadata aside)."""
    ignored = ("ftx", "output")
    try:
        locked = loads(lock_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise RecipeError(f"{lock_path} is damaged and cannot be compared with the recipe "
                          f"({str(exc).splitlines()[0]}); start a new run with another --output") from None
    recorded = _flatten({k: v for k, v in locked.items() if k not in ignored})
    now = _flatten({k: v for k, v in loads(dumps(current)).items() if k not in ignored})
    return sorted(key for key in set(recorded) | set(now) if recorded.get(key) != now.get(key))


def check_same_recipe(lock_path: Path, current: dict[str, Any]) -> None:
    """Resuming needs the recipe the run started with (output and metadata aside)."""
    changed = recipe_changes(lock_path, current)
    if changed:
        raise RecipeError(
            f"cannot resume {lock_path.parent}: the recipe changed since the run started ({', '.join(changed)}); "
            "restore it, or start a new run with --overwrite or another --output"
        )


class RunSignals:
    """SIGTERM/SIGINT for the whole run: the first one during training asks the trainer to checkpoint and stop;
    at any other phase it stops the run at once (there is nothing to save yet, or the model is already in a
    checkpoint); a second one aborts at once without saving. Either way the run ends as :class:`RunInterrupted`
    (exit 130) and ``--resume`` continues or cleanly restarts it.

    Two signals that arrive before Python runs the handler are delivered to it as one; a wakeup pipe counts
    them, so a doubled SIGTERM aborts as documented.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.phase = "starting"
        self.run: Run | None = None
        self.training = False
        self.received = 0
        self.aborted = False
        self._pipe: tuple[int, int] | None = None

    @contextlib.contextmanager
    def installed(self) -> Any:
        """Handle the signals while the block runs (main thread only; elsewhere the caller's handlers stay)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        old_fd = self._open_pipe()
        try:
            for sig in self.SIGNALS:
                signal.signal(sig, self._handle)
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            self._close_pipe(old_fd)

    def _open_pipe(self) -> int | None:
        try:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            old = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except (OSError, ValueError):
            return None
        self._pipe = (read_fd, write_fd)
        return old

    def _close_pipe(self, old_fd: int | None) -> None:
        if self._pipe is None:
            return
        with contextlib.suppress(OSError, ValueError):
            signal.set_wakeup_fd(old_fd if old_fd is not None else -1)
        for fd in self._pipe:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pipe = None

    def _arrivals(self, signum: int) -> int:
        """How many of our signals arrived since the last call (at least the one being handled)."""
        if self._pipe is None:
            return 1
        try:
            data = os.read(self._pipe[0], 4096)
        except (BlockingIOError, OSError):
            return 1
        ours = sum(1 for byte in data if byte in {int(s) for s in self.SIGNALS})
        return max(1, ours)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received += self._arrivals(signum)
        name = signal.Signals(signum).name
        if self.received >= 2:
            self.aborted = True
            raise KeyboardInterrupt
        if self.training and self.run is not None:
            self.run.stop_requested = True
            self.echo(f"received {name}: saving a checkpoint at the end of this step "
                      "(send it again to abort without saving)")
            return
        self.echo(f"received {name} while {self.phase}: stopping")
        raise KeyboardInterrupt

    def interrupted(self, recipe: Recipe, run_dir: Path, *, claimed: bool = True) -> RunInterrupted:
        """The error that ends an interrupted run, saying how to go on; ``claimed``: the run had written its folder."""
        if not claimed:
            return RunInterrupted(f"interrupted while {self.phase}, before {run_dir} was changed; "
                                  "run the same command again to start")
        again = f"`ftx run {recipe.path or 'RECIPE'} --output {run_dir} --resume`"
        if self.aborted:
            return RunInterrupted(f"aborted on a second signal while {self.phase}, without saving; "
                                  f"{again} continues from the last complete checkpoint, if any")
        return RunInterrupted(f"interrupted while {self.phase}; {again} continues the run")


@contextlib.contextmanager
def stop_on_signals(run: Run) -> Any:
    """While the block runs, the first SIGTERM/SIGINT asks the trainer to checkpoint and stop; a second aborts."""
    signals = RunSignals(run.echo)
    signals.run = run
    signals.training = True
    with signals.installed():
        yield


OOM_ADVICE = (
    "lower train.batch_size (raise train.grad_accum to keep the effective batch), lower data.max_length, "
    "set train.gradient_checkpointing = true, or use method 'qlora'; `ftx plan RECIPE` estimates the memory; "
    "train.oom_backoff = true halves the batch automatically"
)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _train_with_backoff(objective: Any, model: Any, run: Run, signals: RunSignals | None = None) -> Any:
    """Train; on out-of-memory, halve the batch and double accumulation (same effective batch) when allowed.

    While training, the first SIGTERM/SIGINT asks for a checkpoint and a stop (see :class:`RunSignals`).
    """
    train = run.recipe_obj.train
    while True:
        try:
            with contextlib.nullcontext() if signals is not None else stop_on_signals(run):
                if signals is not None:
                    signals.training = True
                try:
                    return objective.train(model, run)
                finally:
                    if signals is not None:
                        signals.training = False
        except RuntimeError as exc:
            if not _is_oom(exc):
                raise
            _free_accelerator_memory()
            if not (train.oom_backoff and train.batch_size > 1):
                raise RunError(f"out of memory at batch_size = {train.batch_size}: {OOM_ADVICE}") from exc
            train.batch_size //= 2
            train.grad_accum *= 2
            run.echo(f"out of memory: retrying with batch_size = {train.batch_size}, grad_accum = {train.grad_accum}")


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
