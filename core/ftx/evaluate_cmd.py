"""``ftx eval``: run a recipe's evaluators on a model folder or a run folder, without training.

For a run folder the recipe comes from its ``recipe.lock.toml`` (same data, same split, same seed,
same evaluators) and the model from its ``model/`` folder, adapters included: on an unchanged run
folder the figures equal the ``after`` entry of its ``metrics.json``. ``--recipe`` swaps in other
data or evaluators; for a plain model folder it is required. The gate of the recipe applies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import RecipeError, RunError
from .layout import EVAL, MODEL
from .layout import LOCK as MARKER


def load_eval_recipe(target: Path, recipe_path: Path | None, overrides: Sequence[str], registry: Any) -> tuple[Any, Path]:
    """The recipe to evaluate with and the model folder to load."""
    from .recipe import load_recipe
    from .trained import read_run_recipe

    if not target.exists():
        raise RecipeError(f"{target} does not exist: give a run folder (with {MARKER}) or a model folder")
    is_run = (target / MARKER).is_file()
    model_dir = target / MODEL if is_run else target
    if is_run and not model_dir.is_dir():
        raise RunError(f"run folder {target} has no {MODEL}/ folder: the run did not finish saving its model")
    if recipe_path is not None:
        return load_recipe(recipe_path, registry, overrides), model_dir
    if not is_run:
        raise RecipeError(f"{target} is not a run folder (no {MARKER}): pass --recipe to say which data and "
                          "evaluators to use")
    return read_run_recipe(target, overrides, registry), model_dir


def load_trained_model(recipe: Any, model_dir: Path, run: Any) -> Any:
    """The model saved in ``model_dir``, its tokenizer set on ``run``; an adapter is put back on the recipe's
    base by the method that saved it (:mod:`ftx.trained`)."""
    from .trained import load_saved_model

    return load_saved_model(recipe, model_dir, run)[0]


def evaluate_folder(
    target: Path, *, recipe_path: Path | None = None, overrides: Sequence[str] = (), output: Path | None = None,
    echo: Callable[[str], None] = print, trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Evaluate the model in ``target``; write and return ``{"model", "eval", "skipped"?, "gate"?}``.

    A recipe with ``model.trust_remote_code`` needs ``trust_remote_code`` too (``--trust-remote-code``)."""
    from .context import Run
    from .evaluation import evaluate_all, unique_names
    from .gate import check_gate, parse_gate
    from .plugins import make_plugin_manager
    from .rundir import write_json
    from .training import quiet_libraries

    quiet_libraries()
    import torch

    from .data.prepare import prepare_examples
    from .training import choose_device

    target = Path(target).resolve()
    manager = make_plugin_manager()
    recipe, model_dir = load_eval_recipe(target, recipe_path, overrides, manager.registry)
    from .models.loading import check_remote_code

    check_remote_code(recipe.model, trust_remote_code)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    torch.manual_seed(recipe.train.seed)
    run = Run(recipe, target if (target / MARKER).is_file() else model_dir, manager, echo_fn=echo)
    run.device = choose_device(recipe.train)
    run.data = prepare_examples(recipe.data, recipe.data_format.build(), recipe.train.seed)
    if not run.data.eval:
        raise RecipeError("data.eval: no held-out examples to evaluate on; set data.eval to a fraction or a file")
    names = unique_names(e.name for e in recipe.evaluators)
    evaluators = list(zip(names, [e.build() for e in recipe.evaluators]))
    model = load_trained_model(recipe, model_dir, run)
    echo(f"eval: {model_dir} on {len(run.data.eval)} held-out examples ({run.device})")
    skipped: dict[str, str] = {}
    figures = evaluate_all(evaluators, model, run.data.eval, run, "eval", skipped)
    result: dict[str, Any] = {"model": str(model_dir), "eval": figures}
    if skipped:
        result["skipped"] = skipped
    thresholds, _ = parse_gate(recipe.evaluation.gate, names)
    if thresholds:
        result["gate"] = check_gate(
            [t for t in thresholds if t.metric != "forgetting" and not t.metric.startswith(("before.", "baseline."))],
            {"after": figures}, names,
        )
    if output is None and (target / MARKER).is_file():
        output = target / EVAL
    if output is not None:
        write_json(Path(output), result)
    return result
