"""The run: the seven steps of fine-tuning, in order, with the run folder written as it goes.

task and model (recipe) → data (format plugin) → method (plugin) → evaluate before (evaluator
plugins) → train (objective plugin) → evaluate after → save and report (the run folder).
"""

from __future__ import annotations

import contextlib
import json
import platform
import signal
import threading
import time
import traceback
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import __version__
from .context import Run
from .distributed import is_main
from .errors import FtxError, RecipeError, RunError, RunInterrupted
from .plugins import FtxPluginManager
from .recipe import Recipe
from .recipe.toml_io import dumps, loads
from .rundir import prepare_run_dir, replace_dir, write_json, write_text_atomic

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
    """Run a validated recipe end to end and return what ``metrics.json`` holds."""
    from .models.loading import check_remote_code

    check_remote_code(recipe.model, trust_remote_code)
    target = Path(output) if output else Path(recipe.output.dir)
    if not is_main():
        return _run_worker(recipe, manager, target.expanduser().resolve(), resume)
    run_dir = prepare_run_dir(target, overwrite=overwrite, resume=resume)
    lock_path = run_dir / "recipe.lock.toml"
    resume_from = None
    if resume and lock_path.exists():
        check_same_recipe(lock_path, lock_data(recipe, manager))
        if (run_dir / "metrics.json").exists():
            echo(f"{run_dir} is already complete; nothing to resume")
            return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        from .checkpoints import latest_complete

        resume_from = latest_complete(run_dir / "checkpoints", echo)
        echo(f"resuming from {resume_from}" if resume_from else "no complete checkpoint to resume from: starting over")
    else:
        write_text_atomic(lock_path, dumps(lock_data(recipe, manager)))
    (run_dir / "metrics.json").unlink(missing_ok=True)
    run = Run(recipe, run_dir, manager, echo_fn=echo, resume_from=resume_from)
    manager.hook.run_start(run)
    started = time.perf_counter()
    try:
        metrics = _steps(recipe, run, started)
    except BaseException as exc:
        write_text_atomic(run_dir / "error.txt", "".join(traceback.format_exception(exc)))
        manager.hook.run_end(run, None, exc)
        if isinstance(exc, (FtxError, KeyboardInterrupt)):
            raise
        if isinstance(exc, Exception):
            raise RunError(f"run failed: {type(exc).__name__}: {exc} (traceback in {run_dir / 'error.txt'})") from exc
        raise
    (run_dir / "error.txt").unlink(missing_ok=True)
    manager.hook.run_end(run, metrics, None)
    return metrics


def _run_worker(recipe: Recipe, manager: FtxPluginManager, run_dir: Path, resume: bool) -> dict[str, Any]:
    """Ranks other than 0 train alongside rank 0 and write nothing; they return no metrics."""
    from .checkpoints import latest_complete

    resume_from = latest_complete(run_dir / "checkpoints", lambda _m: None) if resume else None
    run = Run(recipe, run_dir, manager, echo_fn=lambda _m: None, resume_from=resume_from)
    _steps(recipe, run, time.perf_counter())
    return {}


def _steps(recipe: Recipe, run: Run, started: float) -> dict[str, Any]:
    from .training import quiet_libraries

    quiet_libraries()
    import torch

    from .data.prepare import prepare_examples
    from .figures import parameter_figures, peak_memory
    from .models.loading import class_labels, load_model, load_tokenizer, resolve_model_path
    from .training import choose_device

    train = recipe.train
    if train.threads:
        torch.set_num_threads(train.threads)
    torch.manual_seed(train.seed)
    run.device = choose_device(train)
    echo = run.echo

    # kernels first: one that cannot run here (no GPU, library missing) fails before any work is done
    kernels = [(k.name, k.build()) for k in recipe.kernels]

    # 1-2. the task's data, through the selected format
    fmt = recipe.data_format.build()
    run.data = prepare_examples(recipe.data, fmt, train.seed)
    report = run.data.report
    dropped = sum(report.dropped.values())
    echo(f"data: {len(run.data.train)} train, {len(run.data.eval)} eval examples ({recipe.data_format.name})"
         + (f"; {dropped} rows dropped: {dict(report.dropped)}" if dropped else ""))

    # 3. the method, objective and evaluators (their heavy code is imported only now)
    method = recipe.method.build()
    objective = recipe.objective.build()
    evaluators = list(zip(_unique_names(recipe), [e.build() for e in recipe.evaluators]))

    # 4. the pre-trained model
    model_path = resolve_model_path(recipe.model, echo=echo)
    run.tokenizer = load_tokenizer(recipe.model, model_path)
    head = getattr(recipe.objective.spec, "model_head", "causal-lm")
    model = load_model(
        recipe.model, model_path, head=head, device=run.device, tokenizer=run.tokenizer,
        extra=method.load_kwargs(run), labels=class_labels(recipe, run.data) if head == "sequence-classification" else None,
    )
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
    before = review.before(model) if main else {}
    echo(f"training: {recipe.objective.name}")
    result = _train_with_backoff(objective, model, run)
    if run.stop_requested:
        raise RunInterrupted(
            f"stopped on request after saving a checkpoint in {run.checkpoint_dir}; "
            f"continue with `ftx run {recipe.path or 'RECIPE'} --output {run.run_dir} --resume`"
        )
    if result.model is not None:
        model = result.model
    from .generation import forget_replies

    forget_replies(model)  # fused optimizers change weights without bumping the counters the cache is keyed on
    run.history = result.history
    if not main:
        return {}
    after = review.after(model)

    # 6. save the model with its tokenizer, chat template and generation config
    tmp = run.run_dir / ".model.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    method.save(model, tmp, run)
    run.tokenizer.save_pretrained(tmp)
    _write_generation_config(model, run.tokenizer, tmp)
    replace_dir(tmp, run.run_dir / "model")

    metrics: dict[str, Any] = {
        "before": before,
        "after": after,
        "train": {**result.metrics, "skipped_steps": float(run.skipped_steps),
                  "seconds": round(time.perf_counter() - started, 2)},
        "figures": {**params, **peak_memory(run.device)},
        "data": {"train": len(run.data.train), "eval": len(run.data.eval), **report.as_dict()},
    }
    write_json(run.run_dir / "history.json", run.history)
    return review.finish(metrics)  # baseline, forgetting, overfitting, gate; metrics.json and the report


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
    recorded = _flatten({k: v for k, v in loads(lock_path.read_text(encoding="utf-8")).items() if k not in ignored})
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


@contextlib.contextmanager
def stop_on_signals(run: Run) -> Any:
    """While training, the first SIGTERM/SIGINT asks the trainer to checkpoint and stop; a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, _frame: Any) -> None:
        if run.stop_requested:
            raise KeyboardInterrupt
        run.stop_requested = True
        run.echo(f"received {signal.Signals(signum).name}: saving a checkpoint at the end of this step "
                 "(send it again to abort without saving)")

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


OOM_ADVICE = (
    "lower train.batch_size (raise train.grad_accum to keep the effective batch), lower data.max_length, "
    "set train.gradient_checkpointing = true, or use method 'qlora'; `ftx plan RECIPE` estimates the memory; "
    "train.oom_backoff = true halves the batch automatically"
)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _train_with_backoff(objective: Any, model: Any, run: Run) -> Any:
    """Train; on out-of-memory, halve the batch and double accumulation (same effective batch) when allowed."""
    train = run.recipe_obj.train
    while True:
        try:
            with stop_on_signals(run):
                return objective.train(model, run)
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
