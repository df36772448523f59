"""``ftx sweep``: hyperparameter search over a recipe with Optuna, one run folder per trial.

A sweep folder holds::

    study.db                 the Optuna study (SQLite): rerunning the command resumes it
    trial-<n>/               an ordinary run folder per trial (recipe.lock.toml, metrics.json, model/, ...)
    summary.json, summary.md every trial's parameters, state and figure, the best one first
    best.toml                the original recipe with the best trial's parameters set

Search spaces are written ``KEY=DIST(ARGS)``:

* ``train.lr=loguniform(1e-5,1e-3)`` and ``train.warmup_ratio=uniform(0,0.1)``: floats;
* ``train.batch_size=int(4,32)`` or ``int(4,32,4)`` (step): integers, bounds included;
* ``method.r=choice(8,16,32)``: one of the values (numbers, booleans or strings).

Trial 0 is the recipe as written (its own values for the searched keys, enqueued), so the best
trial is compared with the default in one study. Trials report ``eval_loss`` (logged during
training when ``[train] eval_every`` is set) to Optuna's pruner, which stops trials whose
validation loss is worse than the median of earlier trials at the same step. A trial killed
mid-run is retried with the same parameters when the sweep resumes; finished ones never rerun.
Nothing here imports torch or Optuna until a sweep runs.

Several workers: with ``--storage URL`` (``sqlite:///path/study.db`` on one machine, a PostgreSQL or
MySQL URL across machines) the study lives in that database and any number of ``ftx sweep`` workers
share it: each asks the study for the next trial (the database hands each trial to one worker),
runs it in its own ``--output`` folder, and stops when the study holds ``--trials`` finished trials.
A worker records a heartbeat while its trial runs; a trial whose worker fell silent for three
heartbeats (killed, machine lost) is failed and its parameters retried by another worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftx.api import (
    RunFolder,
    apply_overrides,
    evaluator_names,
    is_pipeline,
    plugin_manager,
    read_toml,
    run_recipe,
    toml_loads,
    toml_text,
    write_json,
    write_text_atomic,
)
from ftx.errors import FtxError, Problem, RecipeError, RunError, RunInterrupted
from ftx_hookspecs import hookimpl

STUDY_FILE = "study.db"
STUDY_NAME = "ftx-sweep"
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
PHASES = ("before", "after", "train", "figures", "data", "forgetting", "baseline")
LOWER_IS_BETTER = ("loss", "perplexity", "seconds", "forgetting")
PARAM_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=\s*([A-Za-z_]+)\s*\((.*)\)\s*$")


# -- search space ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One searched recipe key and its distribution, parsed from ``--param KEY=DIST(ARGS)``."""

    key: str
    kind: str
    args: tuple[Any, ...]
    text: str

    @property
    def where(self) -> str:
        """How error messages name this parameter."""
        return f"--param {self.text}"

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for a value (the enqueued one for trial 0)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.args))
        if self.kind == "int":
            low, high, step = self.args
            return trial.suggest_int(self.key, low, high, step=step)
        low, high = self.args
        return trial.suggest_float(self.key, low, high, log=self.kind == "loguniform")

    def corners(self) -> list[Any]:
        """Values that validate the key against the recipe: every choice, or both bounds."""
        if self.kind == "choice":
            return list(self.args)
        return list(self.args[:2])

    def fits(self, value: Any) -> bool:
        """Whether a recipe's own value can be trial 0's value (ranges accept it even out of bounds)."""
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.args)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.kind != "int" or float(value).is_integer()

    def describe(self) -> str:
        return f"{self.key}={self.kind}({', '.join(str(a) for a in self.args if a is not None)})"


def _parse_args(raw: str) -> list[Any]:
    raw = raw.strip()
    if not raw:
        return []
    try:
        return list(toml_loads(f"v = [{raw}]")["v"])
    except ValueError:  # tomllib.TOMLDecodeError
        values = []
        for part in raw.split(","):
            part = part.strip()
            try:
                values.append(toml_loads(f"v = {part}")["v"])
            except ValueError:
                values.append(part)  # a bare word: a string
        return values


def parse_param(text: str) -> Param:
    """Parse ``KEY=DIST(ARGS)``; a :class:`RecipeError` names the ``--param`` and says what is expected."""
    where = f"--param {text}"
    match = PARAM_RE.match(text)
    if not match:
        raise RecipeError(Problem(where, "expected KEY=DIST(ARGS), e.g. train.lr=loguniform(1e-5,1e-3) or "
                                         "method.r=choice(8,16,32)"))
    key, kind, raw = match.groups()
    kind = kind.lower()
    if kind not in DISTRIBUTIONS:
        raise RecipeError(Problem(where, f"unknown distribution {kind!r}; use one of {', '.join(DISTRIBUTIONS)}"))
    args = _parse_args(raw)
    if kind == "choice":
        if not args:
            raise RecipeError(Problem(where, "choice needs at least one value, e.g. choice(8,16,32)"))
        if any(not isinstance(a, (str, int, float, bool)) for a in args):
            raise RecipeError(Problem(where, "choice values must be numbers, booleans or strings"))
        if len(set(map(repr, args))) != len(args):
            raise RecipeError(Problem(where, "choice lists a value twice"))
        return Param(key, kind, tuple(args), text)
    numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    want = "2 or 3 integers: int(low, high[, step])" if kind == "int" else f"2 numbers: {kind}(low, high)"
    if len(numbers) != len(args) or len(args) not in ((2, 3) if kind == "int" else (2,)):
        raise RecipeError(Problem(where, f"{kind} takes {want}"))
    low, high = float(args[0]), float(args[1])
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise RecipeError(Problem(where, f"low ({args[0]}) must be below high ({args[1]})"))
    if kind == "loguniform" and low <= 0:
        raise RecipeError(Problem(where, "loguniform needs a positive low bound"))
    if kind == "int":
        if any(not isinstance(a, int) for a in args):
            raise RecipeError(Problem(where, f"int takes {want}"))
        step = args[2] if len(args) == 3 else 1
        if step <= 0:
            raise RecipeError(Problem(where, "the step of int must be positive"))
        return Param(key, kind, (args[0], args[1], step), text)
    return Param(key, kind, (low, high), text)


def parse_params(texts: Iterable[str]) -> list[Param]:
    """Parse every ``--param``; the same key twice is an error."""
    params = [parse_param(t) for t in texts]
    seen: dict[str, str] = {}
    for p in params:
        if p.key in seen:
            raise RecipeError(Problem(p.where, f"{p.key} is already searched by --param {seen[p.key]}"))
        seen[p.key] = p.text
    if not params:
        raise RecipeError(Problem("--param", "give at least one, e.g. --param train.lr=loguniform(1e-5,1e-3)"))
    return params


def toml_value(value: Any) -> str:
    """A value as TOML text, for a ``key=value`` override."""
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


# -- the metric ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """The figure a sweep optimises: a path into ``metrics.json`` and a direction."""

    path: tuple[str, ...]
    direction: str

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def value(self, metrics: Mapping[str, Any]) -> float:
        """Read the figure from a run's metrics; a missing one names what the run has instead."""
        node: Any = metrics
        for depth, part in enumerate(self.path):
            if not isinstance(node, Mapping) or part not in node:
                here = ".".join(self.path[:depth]) or "metrics.json"
                have = ", ".join(sorted(node)) if isinstance(node, Mapping) else "a value"
                raise RunError(f"--metric {self.name}: the run's metrics have no {part!r} under {here} (it has: {have})")
            node = node[part]
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            raise RunError(f"--metric {self.name}: not a number in the run's metrics ({node!r})")
        return float(node)


def resolve_metric(name: str, evaluator_names: Sequence[str], direction: str | None = None) -> Metric:
    """``exact-match`` → ``after.exact-match.exact_match``; ``loss.perplexity`` → ``after.loss.perplexity``;
    a path starting with ``after``, ``before``, ``train``, ... is used as it is.

    Without ``direction``, figures named like a loss, perplexity or duration are minimised, others maximised.
    """
    parts = tuple(p for p in name.strip().split(".") if p)
    if not parts:
        raise RecipeError(Problem("--metric", "name an evaluator (e.g. exact-match) or a path like after.loss.loss"))
    if parts[0] in PHASES:
        if len(parts) < 2:
            raise RecipeError(Problem(f"--metric {name}", f"a path needs a figure after {parts[0]!r}, e.g. after.loss.loss"))
        if parts[0] in ("before", "after") and parts[1] not in evaluator_names:
            raise RecipeError(Problem(f"--metric {name}", f"{parts[1]!r} is not an evaluator of the recipe "
                                      f"(evaluators: {', '.join(evaluator_names) or 'none'})"))
        path = parts if len(parts) > 2 or parts[0] not in ("before", "after") else (*parts, parts[1].replace("-", "_"))
    elif parts[0] in evaluator_names:
        path = ("after", parts[0], parts[1] if len(parts) > 1 else parts[0].replace("-", "_"))
        if len(parts) > 2:
            raise RecipeError(Problem(f"--metric {name}", "use EVALUATOR, EVALUATOR.FIGURE or a full path like after.loss.loss"))
    else:
        raise RecipeError(Problem(f"--metric {name}", f"not an evaluator of the recipe (evaluators: "
                                  f"{', '.join(evaluator_names) or 'none'}); or give a full path like after.loss.loss"))
    if direction is None:
        figure = path[-1].lower()
        direction = "minimize" if any(word in figure for word in LOWER_IS_BETTER) else "maximize"
    if direction not in ("minimize", "maximize"):
        raise RecipeError(Problem("--direction", "use maximize or minimize"))
    return Metric(path, direction)


# -- pruning -------------------------------------------------------------------------------------


class PruningReporter:
    """A plugin object for one trial's run: feeds ``eval_loss`` to Optuna and stops a hopeless trial.

    Optuna compares intermediate values in the study's direction, so validation loss is reported
    negated when the study maximises. Raising ``optuna.TrialPruned`` from the hook ends the run
    (its folder keeps ``error.txt``); the sweep records the trial as pruned.
    """

    def __init__(self, trial: Any, maximize: bool, prune: bool) -> None:
        self.trial = trial
        self.sign = -1.0 if maximize else 1.0
        self.prune = prune
        self.reported: list[tuple[int, float]] = []

    @hookimpl
    def ftx_log_metrics(self, run: Any, step: int, metrics: Mapping[str, float]) -> None:
        if "eval_loss" not in metrics:
            return
        import optuna

        loss = float(metrics["eval_loss"])
        if not math.isfinite(loss) or any(s == step for s, _ in self.reported):
            return
        self.reported.append((int(step), loss))
        self.trial.report(self.sign * loss, int(step))
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"validation loss {loss:.4g} at step {step} is worse than earlier trials'")


# -- the study -----------------------------------------------------------------------------------


@dataclass
class SweepConfig:
    """What one ``ftx sweep`` asks for."""

    recipe_path: Path
    params: list[Param]
    metric_name: str
    trials: int
    output: Path
    direction: str | None = None
    overrides: tuple[str, ...] = ()
    sampler: str = "tpe"
    seed: int | None = None
    pruner: str = "median"
    prune_after: int = 2
    baseline: bool = True
    storage: str | None = None
    """An Optuna storage URL shared by several workers; ``None``: ``study.db`` in ``output``, one worker."""
    heartbeat: int = 30
    """Seconds between a shared study's heartbeats; a trial silent for three is retried by another worker."""
    startup_trials: int = 10
    metric: Metric = Metric(("after",), "maximize")
    """Resolved by :func:`validate` from ``metric_name`` and the recipe's evaluators."""

    def identity(self) -> dict[str, Any]:
        """What must match for a later command to resume this sweep."""
        return {
            "recipe": str(self.recipe_path.resolve()),
            "params": [p.text for p in self.params],
            "metric": self.metric.name,
            "direction": self.metric.direction,
            "overrides": list(self.overrides),
        }


def _dig(data: Any, key: str) -> tuple[bool, Any]:
    node = data
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def validate(config: SweepConfig, manager_factory: Callable[[], Any]) -> Any:
    """Check the recipe, every searched key at its bounds or choices, and the metric, before any trial."""
    manager = manager_factory()
    recipe = manager.load_recipe(config.recipe_path, config.overrides)
    if is_pipeline(recipe):
        raise RecipeError(Problem("", f"{config.recipe_path} is a pipeline ([[stages]]); sweep one stage's recipe"))
    for param in config.params:
        for value in param.corners():
            try:
                manager.load_recipe(config.recipe_path, [*config.overrides, f"{param.key}={toml_value(value)}"])
            except RecipeError as exc:
                raise RecipeError([Problem(param.where, f"with {param.key} = {value!r}: {p}") for p in exc.problems],
                                  str(config.recipe_path)) from None
    config.metric = resolve_metric(config.metric_name, evaluator_names(recipe), config.direction)
    return recipe


def _state(trial: Any) -> str:
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"):
        return "interrupted"
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
            TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}.get(trial.state, str(trial.state).lower())


def _done(trials: Sequence[Any]) -> int:
    """Trials that count toward ``--trials``: finished ones (an interrupted trial is retried, not counted)."""
    return sum(1 for t in trials if _state(t) in ("complete", "pruned", "failed"))


def open_study(config: SweepConfig, *, resume: bool, overwrite: bool, echo: Callable[[str], None]) -> tuple[Any, bool]:
    """Create the sweep folder and study, or reopen it (retrying trials a kill left running); also whether this
    command created the study (only its creator enqueues the baseline trial)."""
    import optuna
    from optuna.trial import TrialState

    if config.storage is not None:
        if overwrite:
            raise RecipeError("--overwrite cannot delete a study shared through --storage; give another --storage "
                              "or delete the study in that database")
        return _open_shared_study(config, echo)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = config.output
    db = folder / STUDY_FILE
    if overwrite and folder.exists():
        if not db.exists():
            raise RecipeError(f"refusing to overwrite {folder}: it is not an ftx sweep folder (no {STUDY_FILE})")
        shutil.rmtree(folder)
    if resume and not db.exists():
        raise RecipeError(f"nothing to resume: {folder} holds no sweep ({STUDY_FILE}); leave out --resume to start one")
    if not db.exists() and folder.exists() and any(folder.iterdir()):
        raise RecipeError(f"sweep folder {folder} is not empty and holds no sweep; choose another --output")
    folder.mkdir(parents=True, exist_ok=True)
    existed = db.exists()
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}", engine_kwargs={"connect_args": {"timeout": 60}})
    if existed:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        recorded = study.user_attrs.get("ftx")
        if recorded != config.identity():
            raise RecipeError(
                f"{folder} holds a sweep started with other settings ({_difference(recorded, config.identity())}); "
                "run it with those, choose another --output, or pass --overwrite to start over"
            )
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for trial in stale:  # a kill left it running: record it as interrupted and retry its parameters
            storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs=_retry_attrs(trial))
        done = _done(study.get_trials(deepcopy=False))
        echo(f"resuming the sweep in {folder}: {done} of {config.trials} trials finished"
             + (f"; retrying {len(stale)} interrupted" if stale else ""))
    else:
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=config.metric.direction)
        study.set_user_attr("ftx", config.identity())
    _configure(study, config)
    return study, not existed


def _configure(study: Any, config: SweepConfig) -> None:
    import optuna

    study.sampler = _sampler(config, len(study.get_trials(deepcopy=False)))
    study.pruner = (optuna.pruners.MedianPruner(n_startup_trials=config.prune_after, n_warmup_steps=0)
                    if config.pruner == "median" else optuna.pruners.NopPruner())


def _open_shared_study(config: SweepConfig, echo: Callable[[str], None]) -> tuple[Any, bool]:
    """Join (or create) the study in ``config.storage``; trials of silent workers are failed and retried."""
    import optuna

    url = config.storage or ""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(5):  # workers starting together race to create the tables: the losers retry
        try:
            with warnings.catch_warnings():  # Optuna marks heartbeats experimental
                warnings.simplefilter("ignore")
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=config.heartbeat, grace_period=3 * config.heartbeat)
            break
        except Exception as exc:  # noqa: BLE001 - bad URLs, missing drivers and refused connections vary by database
            racing = type(exc).__name__ in ("OperationalError", "IntegrityError")  # tables half-created by another
            if racing and attempt < 4:
                time.sleep(0.5 + attempt)
                continue
            raise RecipeError(f"--storage {url!r}: cannot open the study database: {str(exc).splitlines()[0]} "
                              "(use sqlite:///path/study.db, or a PostgreSQL/MySQL URL whose driver is installed)"
                              ) from None
    config.output.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=config.metric.direction)
        study.set_user_attr("ftx", config.identity())
        created = True
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it: join, if it asks the same
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        recorded = _recorded_identity(study)
        if recorded != config.identity():
            raise RecipeError(f"the study in {url} was started with other settings "
                              f"({_difference(recorded, config.identity())}); run this worker with those") from None
        created = False
    retry_silent_trials(study)
    done = _done(study.get_trials(deepcopy=False))
    echo(("created" if created else "joined") + f" the shared study in {url}: {done} of {config.trials} trials "
         f"finished; this worker's run folders go to {config.output}")
    _configure(study, config)
    return study, created


def _recorded_identity(study: Any) -> Any:
    """The settings the study's creator recorded (it writes them just after creating the study)."""
    for _ in range(50):
        recorded = study.user_attrs.get("ftx")
        if recorded is not None:
            return recorded
        time.sleep(0.1)
    return None


def retry_silent_trials(study: Any) -> int:
    """Fail the running trials of a shared study whose worker stopped beating, marked ``interrupted``, and queue
    their parameters again; return how many. Workers may race here: the one whose state change lands queues
    the retry, so a trial is retried once."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    retried = 0
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        with contextlib.suppress(UpdateFinishedTrialError):  # another worker got there first
            storage.set_trial_user_attr(trial_id, "interrupted", True)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                frozen = storage.get_trial(trial_id)
                if frozen.params:
                    study.enqueue_trial(frozen.params, user_attrs=_retry_attrs(frozen))
                retried += 1
    return retried


def _difference(recorded: Any, now: Mapping[str, Any]) -> str:
    if not isinstance(recorded, Mapping):
        return "no ftx settings recorded"
    keys = [k for k in now if recorded.get(k) != now[k]]
    return "; ".join(f"{k}: {recorded.get(k)!r} then, {now[k]!r} now" for k in keys)


def _sampler(config: SweepConfig, existing: int) -> Any:
    """A seeded sampler; a resumed sweep offsets the seed by the trials so far, so it never replays them, and
    each worker of a shared study by its process id, so two workers never propose the same sequence."""
    import os

    import optuna

    seed = None if config.seed is None else config.seed + existing
    if seed is not None and config.storage is not None:  # hashed, so no two (seed, trials, pid) sum alike
        seed = int(hashlib.sha256(f"{seed}:{os.getpid()}".encode()).hexdigest()[:8], 16)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.startup_trials)


def enqueue_baseline(study: Any, config: SweepConfig, recipe: Any, echo: Callable[[str], None]) -> bool:
    """Make trial 0 the recipe as written: its own values for the searched keys."""
    values = recipe.to_dict()
    fixed: dict[str, Any] = {}
    for param in config.params:
        found, value = _dig(values, param.key)
        if not found or not param.fits(value):
            echo(f"no baseline trial: the recipe's {param.key} = {value!r} is not in {param.describe()}"
                 if found else f"no baseline trial: the recipe does not set {param.key}")
            return False
        fixed[param.key] = value
    study.enqueue_trial(fixed, user_attrs={"baseline": True})
    return True


# -- running -------------------------------------------------------------------------------------


def _run_trial(trial: Any, config: SweepConfig, make_manager: Callable[..., Any],
               run_echo: Callable[[str], None], echo: Callable[[str], None]) -> float:
    with warnings.catch_warnings():  # trial 0 may sit outside a range: Optuna warns, and uses it
        warnings.simplefilter("ignore")
        values = {p.key: p.suggest(trial) for p in config.params}
    resume_dir = _resumable(trial.user_attrs.get("resume_dir"))
    run_dir = resume_dir or config.output / f"trial-{trial.number}"
    trial.set_user_attr("run_dir", str(run_dir))
    label = " (the recipe as written)" if trial.user_attrs.get("baseline") else ""
    if "retry_of" in trial.user_attrs:
        label += f" (retrying interrupted trial {trial.user_attrs['retry_of']}" + (
            f", continuing {run_dir.name}" if resume_dir else "") + ")"
    echo(f"trial {trial.number}{label}: " + ", ".join(f"{k}={_short(v)}" for k, v in values.items()))
    reporter = PruningReporter(trial, config.metric.direction == "maximize", config.pruner != "none")
    manager = make_manager(extra_plugins=[reporter])
    recipe = manager.load_recipe(config.recipe_path,
                                 [*config.overrides, *(f"{k}={toml_value(v)}" for k, v in values.items())])
    try:
        metrics = run_recipe(recipe, manager, output=run_dir, overwrite=resume_dir is None, resume=resume_dir is not None,
                             echo=run_echo)
    except RunError as exc:
        import optuna

        if isinstance(exc.__cause__, optuna.TrialPruned):
            raise exc.__cause__ from None
        raise
    value = config.metric.value(metrics)
    trial.set_user_attr("seconds", float(metrics.get("train", {}).get("seconds", 0.0)))
    return value


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_sweep(
    config: SweepConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
    run_echo: Callable[[str], None] | None = None,
    make_manager: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Validate, open or resume the study, run trials until ``config.trials`` finished, write the summary.

    :param make_manager: builds a plugin manager (``extra_plugins=`` keyword); default
        :func:`ftx.api.plugin_manager`.
    :returns: what ``summary.json`` holds.
    """
    make_manager = make_manager or plugin_manager
    run_echo = run_echo or (lambda message: echo("    " + message))
    recipe = validate(config, make_manager)
    if config.seed is None:
        config.seed = recipe.train.seed
    study, created = open_study(config, resume=resume, overwrite=overwrite, echo=echo)
    if config.baseline and created:
        enqueue_baseline(study, config, recipe, echo)
    if config.pruner != "none" and recipe.train.eval_every is None:
        echo("pruning needs validation loss during training: set train.eval_every (e.g. --set train.eval_every=50); "
             "every trial runs to the end")
    with _sigterm_interrupts():
        _trials(study, config, make_manager, run_echo, echo)
    summary = write_summary(study, config)
    echo(format_table(summary))
    return summary


@contextlib.contextmanager
def _sigterm_interrupts() -> Any:
    """SIGTERM outside training acts as Ctrl-C, so the trial is recorded as interrupted (training's own
    handler checkpoints first)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _trials(study: Any, config: SweepConfig, make_manager: Callable[..., Any], run_echo: Callable[[str], None],
            echo: Callable[[str], None]) -> None:
    """Ask, run and tell trials until ``config.trials`` finished."""
    import optuna
    from optuna.trial import TrialState

    shared = config.storage is not None
    while _done(study.get_trials(deepcopy=False)) < config.trials:
        if shared:  # other workers' trials count; a silent worker's trial is failed and queued again
            retry_silent_trials(study)
            trials = study.get_trials(deepcopy=False)
            running = sum(1 for t in trials if t.state == TrialState.RUNNING)
            if _done(trials) + running >= config.trials:
                time.sleep(min(config.heartbeat, 5))  # the last trials run elsewhere: wait for them to end
                continue
        with warnings.catch_warnings():  # Optuna expects heartbeats with optimize(); ftx beats around ask/tell
            warnings.simplefilter("ignore")
            trial = study.ask()
        started = time.perf_counter()
        try:
            with _heartbeat(study, trial, config.heartbeat if shared else None):
                value = _run_trial(trial, config, make_manager, run_echo, echo)
        except optuna.TrialPruned as exc:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # failed as silent
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            echo(f"trial {trial.number}: pruned ({exc})")
        except (KeyboardInterrupt, RunInterrupted) as exc:
            trial.set_user_attr("interrupted", True)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # failed as silent
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            enqueue_retry(study, trial)
            write_summary(study, config)
            raise RunInterrupted(f"sweep stopped during trial {trial.number}; run the same command again to resume "
                                 f"(finished trials are kept in {config.output / STUDY_FILE})") from exc
        except FtxError as exc:
            trial.set_user_attr("error", str(exc).splitlines()[0][:500])
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # failed as silent
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            echo(f"trial {trial.number}: failed: {str(exc).splitlines()[0]}")
        else:
            try:
                study.tell(trial, value)
            except optuna.exceptions.UpdateFinishedTrialError:  # another worker took this one for dead
                echo(f"trial {trial.number}: finished ({config.metric.name} = {value:.4g}) after another worker had "
                     "given it up as silent and queued it again; raise --heartbeat on a loaded machine")
            else:
                echo(f"trial {trial.number}: {config.metric.name} = {value:.4g} "
                     f"({time.perf_counter() - started:.0f}s)")
        write_summary(study, config)


@contextlib.contextmanager
def _heartbeat(study: Any, trial: Any, every: int | None) -> Any:
    """While the block runs, record the trial's heartbeat every ``every`` seconds (shared studies)."""
    if every is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is retried; the trial must not fail for it
                study._storage.record_heartbeat(trial._trial_id)
            if stop.wait(every):
                return

    thread = threading.Thread(target=beat, name=f"ftx-sweep-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every)


def enqueue_retry(study: Any, trial: Any) -> None:
    """Queue an interrupted trial's parameters so the resumed sweep runs them first."""
    frozen = study._storage.get_trial(trial._trial_id)
    if frozen.params:
        study.enqueue_trial(frozen.params, user_attrs=_retry_attrs(frozen))


def _retry_attrs(trial: Any) -> dict[str, Any]:
    """A retry remembers the trial it repeats, and its run folder (continued from a checkpoint when it has one)."""
    attrs = {"retry_of": trial.number, "baseline": trial.user_attrs.get("baseline", False)}
    if trial.user_attrs.get("run_dir"):
        attrs["resume_dir"] = trial.user_attrs["run_dir"]
    return attrs


def _resumable(folder: str | None) -> Path | None:
    """An interrupted trial's run folder that holds a checkpoint and no results yet."""
    if not folder:
        return None
    path = Path(folder)
    folder = RunFolder(path)
    return path if folder.is_run() and folder.checkpoints.is_dir() and not folder.is_finished() else None


# -- summary -------------------------------------------------------------------------------------


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial (waiting ones left out), in trial order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = _state(t)
        if state == "waiting":
            continue
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.datetime_start and t.datetime_complete:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        row: dict[str, Any] = {
            "number": t.number, "state": state, "value": t.value if state == "complete" else None,
            "params": dict(t.params), "run_dir": t.user_attrs.get("run_dir"),
            "baseline": bool(t.user_attrs.get("baseline")), "seconds": round(seconds, 1) if seconds else None,
        }
        if state == "pruned" and t.intermediate_values:
            step = max(t.intermediate_values)
            row["pruned_at_step"] = step
        if "error" in t.user_attrs:
            row["error"] = t.user_attrs["error"]
        if "retry_of" in t.user_attrs:
            row["retry_of"] = t.user_attrs["retry_of"]
        rows.append(row)
    return rows


def write_summary(study: Any, config: SweepConfig) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and (once a trial completed) ``best.toml``."""
    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "complete"]
    maximize = config.metric.direction == "maximize"
    best = max(complete, key=lambda r: r["value"] if maximize else -r["value"]) if complete else None
    baseline = next((r for r in complete if r["baseline"]), None)
    summary: dict[str, Any] = {
        "recipe": str(config.recipe_path.resolve()),
        "metric": config.metric.name,
        "direction": config.metric.direction,
        "params": [p.text for p in config.params],
        "overrides": list(config.overrides),
        "trials": rows,
        "best": best,
        "baseline": baseline,
        "counts": {s: sum(1 for r in rows if r["state"] == s) for s in ("complete", "pruned", "failed", "interrupted")},
    }
    write_json(config.output / "summary.json", summary)
    write_text_atomic(config.output / "summary.md", format_markdown(summary))
    if best is not None:
        write_text_atomic(config.output / "best.toml", best_recipe_text(config, best))
    return summary


def _columns(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    keys = [p.split("=", 1)[0].strip() for p in summary["params"]]
    best = (summary.get("best") or {}).get("number")
    head = ["trial", "state", summary["metric"], *keys, "seconds"]
    body = []
    for r in summary["trials"]:
        mark = " *" if r["number"] == best else (" (recipe)" if r["baseline"] else "")
        state = r["state"] + (f" @{r['pruned_at_step']}" if "pruned_at_step" in r else "")
        value = f"{r['value']:.4g}" if r["value"] is not None else "-"
        body.append([f"{r['number']}{mark}", state, value, *(_short(r["params"].get(k, "-")) for k in keys),
                     f"{r['seconds']:.0f}" if r.get("seconds") else "-"])
    return head, body


def format_table(summary: Mapping[str, Any]) -> str:
    """The summary as an aligned text table, best trial marked ``*``."""
    head, body = _columns(summary)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [head, *body]]
    best = summary.get("best")
    tail = (f"best: trial {best['number']}, {summary['metric']} = {best['value']:.4g} ({summary['direction']})"
            if best else "no trial completed yet")
    base = summary.get("baseline")
    if best and base:
        tail += f"; the recipe as written (trial {base['number']}): {base['value']:.4g}"
    return "\n".join(["", *lines, "", tail])


def format_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown table."""
    head, body = _columns(summary)
    lines = [f"# Sweep of {Path(summary['recipe']).name}", "",
             f"Metric: `{summary['metric']}` ({summary['direction']}); best trial marked *.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    best = summary.get("best")
    if best:
        lines += ["", (f"Best: trial {best['number']} ({best['run_dir']}), {summary['metric']} = {best['value']:.6g}; "
                       "its recipe is `best.toml`.")]
    return "\n".join(lines) + "\n"


PATH_KEYS = (("model", "name"), ("model", "tokenizer"), ("data", "train"), ("data", "eval"),
             ("evaluation", "forgetting_text"), ("distributed", "deepspeed"))
"""Recipe keys holding paths the core resolves against the recipe's folder."""


def _absolute(value: Any, base: Path) -> Any:
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    if not isinstance(value, str) or value.startswith("builtin:") or value == "auto":
        return value
    path = Path(value).expanduser()
    full = path if path.is_absolute() else base / path
    return str(full.resolve()) if (full.exists() or value.startswith((".", "/", "~"))) else value


def best_recipe_text(config: SweepConfig, best: Mapping[str, Any]) -> str:
    """The original recipe with ``--set`` overrides and the best parameters applied; paths made absolute."""
    base = config.recipe_path.resolve().parent
    data = apply_overrides(read_toml(config.recipe_path),
                           [*config.overrides, *(f"{k}={toml_value(v)}" for k, v in best["params"].items())])
    for table, key in PATH_KEYS:
        section = data.get(table)
        if isinstance(section, dict) and key in section:
            section[key] = _absolute(section[key], base)
    data.setdefault("output", {})["dir"] = "best"
    header = [
        f"# The best recipe of the sweep in {config.output}: trial {best['number']} ({best['run_dir']}),",
        f"# {config.metric.name} = {best['value']:.6g} ({config.metric.direction}).",
        f"# From {config.recipe_path.resolve()} with " + ", ".join(f"{k} = {_short(v)}" for k, v in best["params"].items())
        + (f" and --set {' --set '.join(config.overrides)}" if config.overrides else "") + ".",
        "# Paths are absolute; [output] dir is the folder `best` beside this file.",
        "",
    ]
    return "\n".join(header) + toml_text(data)


def load_summary(folder: Path) -> dict[str, Any]:
    """``summary.json`` of a sweep folder."""
    return json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))
