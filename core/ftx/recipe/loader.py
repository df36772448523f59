"""Load a recipe: TOML → overrides → core tables → each selected component's options → paths."""

from __future__ import annotations

import copy
import difflib
import glob
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import ComponentNotFound, NestedOptionsError, Problem, RecipeError
from ..registry import Registry
from .model import Recipe, Selected
from .schema import (
    SYNONYMS,
    TOP_LEVEL,
    DataSection,
    DistributedSection,
    EvaluationSection,
    ModelSection,
    OutputSection,
    TrainSection,
)
from .toml_io import TOMLDecodeError, loads

DATA_EXTENSIONS = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt", ".gz", ".arrow")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a value parsed as TOML (a bare word stays a string)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(Problem("--set", f"expected KEY=VALUE (e.g. train.lr=1e-4), got {text!r}"))
    raw = raw.strip()
    try:
        value = loads(f"v = {raw}")["v"]
    except TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b=value`` set; list items are addressed by index."""
    result = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = result
        for depth, key in enumerate(keys[:-1]):
            node = _child(node, key, keys[: depth + 1])
        last = keys[-1]
        if isinstance(node, list):
            node[_index(node, last, keys)] = value
        else:
            node[last] = value
    return result


def _child(node: Any, key: str, where: list[str]) -> Any:
    if isinstance(node, list):
        return node[_index(node, key, where)]
    if not isinstance(node, dict):
        raise RecipeError(Problem("--set " + ".".join(where), "is not a table"))
    return node.setdefault(key, {})


def _index(node: list[Any], key: str, where: list[str]) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise RecipeError(Problem("--set " + ".".join(where), f"expected an index below {len(node)}"))
    return int(key)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` did you mean 'x'?`` for the closest candidate (synonyms from other tools included), or ``""``."""
    candidates = list(candidates)
    pool = {c: c for c in candidates}
    pool.update({syn: real for syn, real in SYNONYMS.items() if real in candidates})
    close = difflib.get_close_matches(word, list(pool), n=1, cutoff=0.6)
    return f"; did you mean {pool[close[0]]!r}?" if close else ""


def unknown_key(word: str, candidates: Iterable[str]) -> str:
    """``unknown key`` with a did-you-mean, or else every valid key, so a table's keys are discoverable from the CLI."""
    keys = list(dict.fromkeys(candidates))
    hint = did_you_mean(word, keys)
    if hint or not keys:
        return "unknown key" + (hint or "; this table takes no keys")
    return "unknown key; valid keys: " + ", ".join(keys)


def _expected(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "is required"
    got = err.get("input")
    got_text = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind != "value_error":  # pydantic's own sentences start with a capital; a validator's message is kept as written
        message = message[:1].lower() + message[1:]
    return f"{message}{got_text}"


def _join_path(path: str, relative: str) -> str:
    """``objective.rewards`` + ``[0].zero_at`` -> ``objective.rewards[0].zero_at``."""
    if not relative:
        return path
    return f"{path}{relative}" if relative.startswith("[") or not path else f"{path}.{relative}"


def validation_problems(
    model: type[BaseModel], table: Mapping[str, Any], prefix: str, context: Mapping[str, Any] | None = None
) -> tuple[Any, list[Problem]]:
    """Validate ``table`` against ``model``; return the instance (or None) and problems with full paths.

    ``context`` reaches the model's validators (``info.context``); component options get
    ``{"registry": registry}`` so they can check names of other components (e.g. an RL objective's rewards).
    """
    try:
        return model.model_validate(dict(table), context=dict(context) if context is not None else None), []
    except ValidationError as exc:
        problems = []
        fields = list(model.model_fields)
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            path = ".".join([prefix, *loc]) if prefix else ".".join(loc)
            nested = (err.get("ctx") or {}).get("error")
            if isinstance(nested, NestedOptionsError):  # another component's options, validated inside this one
                problems.extend(Problem(_join_path(path, p.path), p.message) for p in nested.problems)
            elif err["type"] == "extra_forbidden":
                top = len(loc) == 1  # a nested table's keys are not the model's fields
                problems.append(Problem(path, unknown_key(loc[-1], fields) if top else "unknown key"))
            else:
                problems.append(Problem(path, _expected(err)))
        return None, problems


def _select(
    registry: Registry, kind: str, table: Any, path: str, problems: list[Problem], key: str = "use"
) -> Selected | None:
    if not isinstance(table, Mapping):
        problems.append(Problem(path, f"must be a table with {key} = \"<{kind} name>\""))
        return None
    name = table.get(key)
    if not isinstance(name, str):
        problems.append(Problem(f"{path}.{key}", f"is required: the name of a {kind} (see `ftx plugins`)"))
        return None
    try:
        found = registry.get(kind, name, f"{path}.{key}")
    except ComponentNotFound as exc:
        problems.extend(exc.problems)
        return None
    rest = {k: v for k, v in table.items() if k != key}
    options, errs = validation_problems(found.spec.options, rest, path, {"registry": registry})
    problems.extend(errs)
    if options is None:
        return None
    return Selected(name, found.spec, options, found.provenance, path)


def _select_list(registry: Registry, kind: str, raw: Any, path: str, problems: list[Problem]) -> list[Selected]:
    """An array of tables (``[[loggers]]``), each selecting a component of ``kind`` with ``use``."""
    if not isinstance(raw, list):
        problems.append(Problem(path, f"must be an array of tables: [[{path}]] use = \"...\""))
        return []
    chosen = [_select(registry, kind, table, f"{path}[{i}]", problems) for i, table in enumerate(raw)]
    return [c for c in chosen if c is not None]


def _absolute(value: str, base: Path) -> Path:
    """``value`` relative to the recipe's folder, normalised (``recipes/../data`` -> ``data``) for messages."""
    candidate = Path(value).expanduser()
    return Path(os.path.normpath(candidate if candidate.is_absolute() else base / candidate))


def _resolve_data_path(value: str, base: Path, path: str, problems: list[Problem]) -> str:
    full = _absolute(value, base)
    if glob.has_magic(str(full)):
        if not glob.glob(str(full)):
            problems.append(Problem(path, f"no file matches {value!r} (looked in {full.parent})"))
        return str(full)
    if full.is_dir():
        problems.append(Problem(path, f"{full} is a folder, not a data file; name the files in it "
                                      f"(a glob such as '{value.rstrip('/')}/*.jsonl' works)"))
        return str(full)
    if full.exists():
        from ..data.sources import sniff

        problem = sniff(full)
        if problem is not None:
            problems.append(Problem(path, f"{full} {problem}"))
        return str(full)
    if value.lower().endswith(DATA_EXTENSIONS) or value.startswith((".", "/", "~")):
        problems.append(Problem(path, f"file not found: {full}"))
        return str(full)
    if HUB_ID.match(value):
        return value  # a hub dataset id, used only when a network exists
    problems.append(Problem(path, f"file not found: {full} (and {value!r} is not a hub dataset id)"))
    return value


def _check_deepspeed_file(value: str, base: Path, problems: list[Problem]) -> str:
    """``[distributed] deepspeed``: resolved against the recipe's folder; it must hold a JSON config object."""
    from ..deepspeed_config import read_config, zero_stage

    full = _absolute(value, base)
    try:
        config = read_config(full)
    except ValueError as exc:
        problems.append(Problem("distributed.deepspeed", str(exc)))
        return str(full)
    if zero_stage(config) not in (0, 1, 2, 3):
        problems.append(Problem("distributed.deepspeed", f"{full}: zero_optimization.stage must be 0 to 3"))
    return str(full)


def _resolve_model_name(name: str, base: Path) -> str:
    if name.startswith("builtin:"):
        return name
    full = _absolute(name, base)
    if full.exists() or name.startswith((".", "/", "~")) or name.lower().endswith(".gguf"):
        return str(full)
    return name


def build_recipe(data: Mapping[str, Any], registry: Registry, *, path: Path | None = None) -> Recipe:
    """Validate plain recipe data against the core schema and the registry; raise every problem at once."""
    base = path.parent.resolve() if path is not None else Path.cwd()
    source = str(path) if path is not None else None
    problems: list[Problem] = []

    for key in data:
        if key not in TOP_LEVEL:
            problems.append(Problem(key, "unknown table" + did_you_mean(key, TOP_LEVEL)))
    for required in ("model", "data", "method", "objective"):
        if required not in data:
            problems.append(Problem(required, f"[{required}] table is required"))
    if problems and any(p.path in ("model", "data", "method", "objective") for p in problems):
        raise RecipeError(problems, source)

    model, errs = validation_problems(ModelSection, _table(data, "model", problems), "model")
    problems += errs
    if model is not None and model.name.startswith("builtin:"):
        from ..models.tiny import TINY_CONFIGS

        if model.name.removeprefix("builtin:") not in TINY_CONFIGS:
            known = ", ".join(f"builtin:{n}" for n in sorted(TINY_CONFIGS))
            problems.append(Problem("model.name", f"unknown built-in model {model.name!r}; built-ins: {known}"))
    train, errs = validation_problems(TrainSection, _table(data, "train", problems), "train")
    problems += errs
    output, errs = validation_problems(OutputSection, _table(data, "output", problems), "output")
    problems += errs

    data_table = _table(data, "data", problems)
    core_keys = set(DataSection.model_fields)
    data_core = {k: v for k, v in data_table.items() if k in core_keys}
    data_rest = {k: v for k, v in data_table.items() if k not in core_keys}
    data_section, errs = validation_problems(DataSection, data_core, "data")
    problems += errs
    data_format = None
    if data_section is not None:
        try:
            fmt = registry.get("data format", data_section.format, "data.format")
        except ComponentNotFound as exc:
            problems.extend(exc.problems)
        else:
            opts, errs = validation_problems(fmt.spec.options, data_rest, "data")
            for problem in errs:  # an unknown data key may be a misspelled core key
                if problem.message.startswith("unknown key"):
                    word = problem.path.rsplit(".", 1)[-1]
                    problem = Problem(problem.path, unknown_key(word, [*DataSection.model_fields, *fmt.spec.options.model_fields]))
                problems.append(problem)
            if opts is not None:
                data_format = Selected(fmt.spec.name, fmt.spec, opts, fmt.provenance, "data")
        data_section.train = _resolve_paths(data_section.train, base, "data.train", problems)
        if isinstance(data_section.eval, (str, list)):
            data_section.eval = _resolve_paths(data_section.eval, base, "data.eval", problems)

    method = _select(registry, "method", data.get("method"), "method", problems)
    objective = _select(registry, "objective", data.get("objective"), "objective", problems)
    evaluators: list[Selected] = []
    raw_evaluators = data.get("evaluators", [])
    if not isinstance(raw_evaluators, list):
        problems.append(Problem("evaluators", "must be an array of tables: [[evaluators]] use = \"...\""))
        raw_evaluators = []
    for index, table in enumerate(raw_evaluators):
        chosen = _select(registry, "evaluator", table, f"evaluators[{index}]", problems)
        if chosen is not None:
            evaluators.append(chosen)

    loggers = _select_list(registry, "logger", data.get("loggers", []), "loggers", problems)
    kernels = _select_list(registry, "kernel", data.get("kernels", []), "kernels", problems)

    if objective is not None and data_format is not None:
        want = getattr(objective.spec, "example_kind", "chat")
        have = getattr(data_format.spec, "example_kind", "chat")
        if want != have and not (want == "text" and have == "chat"):
            problems.append(Problem(
                "data.format",
                f"objective {objective.name!r} trains on {want} examples but format {data_format.name!r} "
                f"gives {have} examples; choose a {want} format",
            ))

    evaluation, errs = validation_problems(EvaluationSection, _table(data, "evaluation", problems), "evaluation")
    problems += errs
    if evaluation is not None and train is not None:
        problems += _check_evaluation(evaluation, evaluators, train, data_section, base)
    if data_section is not None and data_section.mix:

        problems += check_mix(data_section, registry, base, getattr(objective.spec, "example_kind", "chat") if objective
                              else None, model.name if model else None, evaluation)

    distributed, errs = validation_problems(DistributedSection, _table(data, "distributed", problems), "distributed")
    problems += errs
    if distributed is not None and distributed.deepspeed:
        distributed.deepspeed = _check_deepspeed_file(distributed.deepspeed, base, problems)
    if distributed is not None and distributed.strategy == "deepspeed" and train is not None and train.device in ("cpu", "mps"):
        problems.append(Problem("distributed.strategy", f"DeepSpeed trains on CUDA GPUs only, and train.device is "
                                f"'{train.device}': use strategy = 'fsdp' (CPU or GPU) or 'ddp'"))

    if problems:
        raise RecipeError(problems, source)
    assert model and data_section and data_format and method and objective and train and output
    model.name = _resolve_model_name(model.name, base)
    if model.tokenizer:
        model.tokenizer = _resolve_model_name(model.tokenizer, base)
    out = Path(output.dir).expanduser()
    output.dir = str(out if out.is_absolute() else base / out)
    return Recipe(model, data_section, data_format, method, objective, train, evaluators, output, path, base,
                  evaluation or EvaluationSection(), distributed or DistributedSection(), loggers, kernels)


def _check_evaluation(
    section: EvaluationSection, evaluators: list[Selected], train: TrainSection, data: DataSection | None, base: Path
) -> list[Problem]:
    """Cross-table checks of ``[evaluation]``: gate metrics name selected evaluators; early stopping can evaluate."""
    from ..evaluation import unique_names
    from ..gate import parse_gate

    _, problems = parse_gate(section.gate, unique_names(e.name for e in evaluators))
    if section.early_stopping_patience is not None:
        if train.eval_every is None:
            problems.append(Problem("evaluation.early_stopping_patience",
                                    "needs validation loss during training: set train.eval_every (steps)"))
        if data is not None and data.eval is None:
            problems.append(Problem("evaluation.early_stopping_patience", "needs a held-out split: set data.eval"))
    if section.forgetting_text != "auto":
        section.forgetting_text = _resolve_data_path(section.forgetting_text, base, "evaluation.forgetting_text", problems)
    return problems


def _table(data: Mapping[str, Any], key: str, problems: list[Problem]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        problems.append(Problem(key, f"must be a table ([{key}])"))
        return {}
    return dict(value)


def _resolve_paths(value: str | list[str], base: Path, path: str, problems: list[Problem]) -> str | list[str]:
    if isinstance(value, list):
        return [_resolve_data_path(v, base, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return _resolve_data_path(value, base, path, problems)


def check_mix(
    section: DataSection, registry: Any, base: Path, objective_kind: str | None, model_name: str | None,
    evaluation: EvaluationSection | None,
) -> list[Problem]:
    """Recipe checks of ``[data] mix`` that need more than its own keys: paths resolved against the recipe's
    folder, each format registered with valid options and of a kind the objective trains on, and general
    text left over once the forgetting check's passages are held out. Records what preparation needs."""
    from ..data.mix import CAUSAL_KINDS, _general_origin, mix_label
    from ..errors import ComponentNotFound
    from .model import Selected

    problems: list[Problem] = []
    for index, item in enumerate(section.mix):
        where = mix_label(index)
        if item.train is not None:
            item.train = _resolve_paths(item.train, base, f"{where}.train", problems)
        name = item.format or "text"
        try:
            found = registry.get("data format", name, f"{where}.format")
        except ComponentNotFound as exc:
            problems.extend(exc.problems)
            continue
        options, errs = validation_problems(found.spec.options, dict(item.model_extra or {}), where)
        problems += errs
        kind = getattr(found.spec, "example_kind", "chat")
        if objective_kind is not None and kind != objective_kind and not (
                kind in CAUSAL_KINDS and objective_kind in CAUSAL_KINDS):
            problems.append(Problem(f"{where}.format", f"format {name!r} gives {kind} examples but the objective trains "
                                    f"on {objective_kind} examples; mix data of the objective's kind"))
        if options is not None:
            item._selected = Selected(name, found.spec, options, found.provenance, where)
        if item.source == "general-text":
            origin, problem = _general_origin(model_name, evaluation or EvaluationSection.model_validate({}))
            if problem:
                problems.append(Problem(f"{where}.source", problem))
            item._origin = origin
    return problems
