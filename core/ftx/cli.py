"""The ``ftx`` command line. Importing this module must never import torch or transformers."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .errors import FtxError

CORE_COMMANDS = ("run", "validate", "plugins", "eval", "data", "new-plugin")


def _manager() -> Any:
    """The plugin manager, built once per command line (kept in the root click context): ``ftx --help``
    would otherwise load every plugin twice."""
    from .plugins import make_plugin_manager

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return make_plugin_manager()
    meta = ctx.find_root().meta
    if "ftx.manager" not in meta:
        meta["ftx.manager"] = make_plugin_manager()
    return meta["ftx.manager"]


class FtxGroup(click.Group):
    """Adds the sub-commands plugins register (each imported only when invoked), and handles every
    command's errors in one place: :func:`handle_errors`."""

    def invoke(self, ctx: click.Context) -> Any:
        with handle_errors():
            return super().invoke(ctx)

    def _plugin_commands(self) -> dict[str, Any]:
        try:
            manager = _manager()
        except Exception:  # noqa: BLE001 - a broken environment must not hide the core commands
            return {}
        return {r.spec.name: r for r in manager.registry.all("command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(n for n in self._plugin_commands() if n not in names)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        found = self._plugin_commands().get(cmd_name)
        if found is None:
            _hint_missing_command(cmd_name)
            return None
        return _LazyCommand(found.spec)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        plugin = self._plugin_commands()
        for name in self.list_commands(ctx):
            cmd = super().get_command(ctx, name)
            help_text = (cmd.get_short_help_str(70) if cmd is not None
                         else click.Command(name, help=plugin[name].spec.summary).get_short_help_str(70))
            rows.append((name, help_text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _hint_missing_command(name: str) -> None:
    """A first-party command whose plugin is not installed: say which distribution to install (exit 2)."""
    from .registry import known_distributions

    known = known_distributions().get(("command", name))
    if known is None:
        return
    try:
        message = _manager().registry.missing_message("command", name)  # notes a plugin that failed to load
    except Exception:  # noqa: BLE001 - a broken environment still gets the install hint
        message = f"command {name!r} ships in the distribution {known[0]!r}: pip install {known[0]}"
    raise click.UsageError(message)


class _LazyCommand(click.Command):
    """A plugin command whose factory is imported only when it runs."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec.name, help=spec.summary, add_help_option=False, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        self.spec = spec

    def invoke(self, ctx: click.Context) -> Any:
        real = self.spec.load_factory()()
        # not standalone: its errors reach FtxGroup.invoke and are handled like a core command's
        return real.main(args=ctx.args, prog_name=f"ftx {self.spec.name}", standalone_mode=False,
                         help_option_names=ctx.help_option_names)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Where any command's failure, core or plugin, becomes one message and an exit code.

    2: recipe, usage or data error; 1: the run failed; 3: a gate threshold failed; 130: interrupted
    (SIGTERM too, like Ctrl-C: a run installs its own handler, which checkpoints first).
    """
    with _sigterm_interrupts(), _handled():
        yield


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while a command runs (main thread only), so it ends with 130, not 143."""
    import signal
    import threading

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


@contextlib.contextmanager
def _handled() -> Iterator[None]:
    try:
        yield
    except FtxError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        _interrupted()
    except click.exceptions.Abort as exc:  # a plugin command's click turned Ctrl-C into Abort
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
        _interrupted()


def _interrupted() -> NoReturn:
    click.echo("interrupted", err=True)
    sys.exit(130)


def _fail(exc: FtxError) -> NoReturn:
    click.secho("error: ", fg="red", bold=True, err=True, nl=False)
    click.echo(str(exc), err=True)
    sys.exit(exc.exit_code)


def _version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    lines = [f"ftx {__version__}"]
    try:
        lines.append(f"ftx-hookspecs {version('ftx-hookspecs')}")
    except PackageNotFoundError:
        pass
    manager = _manager()
    for info in sorted(manager.plugins.values(), key=lambda i: i.name):
        if not info.builtin:
            lines.append(f"  plugin {info.name}: {info.distribution} {info.version}")
    for broken in manager.registry.broken:
        lines.append(f"  plugin {broken.name}: BROKEN ({broken.error_line})")
    return "\n".join(lines)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(_version_text())
    ctx.exit()


@click.group(cls=FtxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the versions of ftx and its plugins.")
def main() -> None:
    """Fine-tune language models from one TOML recipe.

    \b
    ftx run recipes/quickstart.toml      train and evaluate, offline
    ftx validate recipe.toml             check every key without loading a model
    ftx plugins                          list methods, objectives, formats, evaluators
    """


_set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. --set train.lr=1e-4."
)


_stage_option = click.option("--stage", help="For a [[stages]] pipeline: the stage to use.")


def _load(recipe_path: Path, overrides: tuple[str, ...]) -> tuple[Any, Any]:
    manager = _manager()
    return manager, manager.load_recipe(recipe_path, overrides)


@main.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@_set_option
def validate(recipe_path: Path, overrides: tuple[str, ...]) -> None:
    """Check a recipe: every key, every selected component and its options; loads no model."""
    _, recipe = _load(recipe_path, overrides)
    from .recipe import Pipeline

    if isinstance(recipe, Pipeline):  # every stage was validated as a recipe of its own
        click.echo(f"{recipe_path}: ok ({len(recipe.stages)} stages)\n{recipe.describe()}")
        return
    click.echo(f"{recipe_path}: ok ({recipe.summary()})")


@main.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@_set_option
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Run folder (default: [output] dir).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in a non-empty run folder.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the hub when the recipe asks for it.")
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes on this machine (DDP by default; see [distributed]).")
@click.option("--nnodes", type=click.IntRange(min=1), default=1, show_default=True, help="Machines in the run.")
@click.option("--node-rank", type=click.IntRange(min=0), default=0, help="This machine's rank.")
@click.option("--master-addr", default="127.0.0.1", show_default=True, help="Address of the rank-0 machine.")
@click.option("--master-port", type=int, default=29511, show_default=True, help="Port of the rank-0 machine.")
def run(recipe_path: Path, overrides: tuple[str, ...], output: Path | None, overwrite: bool, resume: bool,
        trust_remote_code: bool, nproc_per_node: int, nnodes: int, node_rank: int, master_addr: str,
        master_port: int) -> None:
    """Fine-tune and evaluate as RECIPE says, writing a run folder."""
    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other")
    import os

    from .distributed import CHILD_FLAG, launch, launched, needs_launcher

    manager, recipe = _load(recipe_path, overrides)  # a bad recipe fails here, once, before any process starts
    strategy = getattr(getattr(recipe, "distributed", None), "strategy", "ddp")
    under_launcher = os.environ.get(CHILD_FLAG) or launched()  # ftx's own, or torchrun started by hand
    if needs_launcher(nproc_per_node, nnodes, strategy) and not under_launcher:
        args = ["run", str(recipe_path), *[f"--set={o}" for o in overrides]]
        args += [f"--output={output}"] if output else []
        args += ["--overwrite"] if overwrite else []
        args += ["--resume"] if resume else []
        args += ["--trust-remote-code"] if trust_remote_code else []
        sys.exit(launch(args, nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank,
                        master_addr=master_addr, master_port=master_port))
    from .runner import run_recipe

    def echo(message: str) -> None:
        click.echo(message, err=True)

    if hasattr(recipe, "stages"):  # [[stages]]: SFT -> reward model -> RL, ... (core/ftx/pipeline.py)
        from .pipeline import run_pipeline, summary_text

        summary = run_pipeline(recipe, manager, output=output, overwrite=overwrite, resume=resume,
                               trust_remote_code=trust_remote_code, echo=echo)
        click.echo(summary_text(summary, (Path(output) if output else recipe.output_dir).resolve()))
        return
    metrics = run_recipe(recipe, manager, output=output, overwrite=overwrite, resume=resume,
                         trust_remote_code=trust_remote_code, echo=echo)
    if not metrics:  # a rank other than 0 of a distributed run
        return
    out = Path(output) if output else Path(recipe.output.dir)
    click.echo(_summary(metrics, out.resolve()))
    from .gate import gate_failure

    failed = gate_failure(metrics)
    if failed is not None:
        raise failed  # exit 3: the run finished, but a threshold of [evaluation.gate] did not hold


@main.command("eval")
@click.argument("target", metavar="MODEL_OR_RUN_DIR", type=click.Path(path_type=Path))
@click.option("--recipe", "recipe_path", type=click.Path(path_type=Path),
              help="Recipe giving data and evaluators (default: the run folder's recipe.lock.toml).")
@_set_option
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the figures here (default: RUN_DIR/eval.json).")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the hub when the recipe asks for it.")
def eval_command(target: Path, recipe_path: Path | None, overrides: tuple[str, ...], output: Path | None,
                 trust_remote_code: bool) -> None:
    """Run evaluators on a model or run folder without training; prints the figures as JSON."""
    from .evaluate_cmd import evaluate_folder
    from .gate import gate_failure

    result = evaluate_folder(target, recipe_path=recipe_path, overrides=overrides, output=output,
                             echo=lambda message: click.echo(message, err=True), trust_remote_code=trust_remote_code)
    click.echo(json.dumps(result, indent=2))
    failed = gate_failure(result)
    if failed is not None:
        raise failed


@main.group("data")
def data_group() -> None:
    """Inspect a recipe's data before training."""


@data_group.command("preview")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@_set_option
@click.option("-n", "count", type=click.IntRange(min=0), default=3, show_default=True, help="Samples to show.")
@click.option("--color/--no-color", default=None, help="Colour trained tokens (default: when stdout is a terminal).")
@_stage_option
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the hub when the recipe asks for it.")
def data_preview(recipe_path: Path, overrides: tuple[str, ...], count: int, color: bool | None,
                 stage: str | None, trust_remote_code: bool) -> None:
    """Show samples with trained tokens marked, token-length statistics and dropped rows by reason."""
    from .commands import load_stage
    from .data.preview import run_preview

    recipe = load_stage(recipe_path, overrides, stage, manager=_manager())
    run_preview(recipe, count, color=color, trust_remote_code=trust_remote_code)


def _summary(metrics: dict[str, Any], run_dir: Path) -> str:
    lines = ["", f"done in {metrics['train'].get('seconds', 0):.0f}s: {run_dir}"]
    for name, after in metrics.get("after", {}).items():
        before = metrics.get("before", {}).get(name, {})
        for key, value in after.items():
            was = before.get(key)
            arrow = f"{was:.4g} -> {value:.4g}" if was is not None else f"{value:.4g}"
            lines.append(f"  {name} {key}: {arrow}")
    lines.append(f"  model: {run_dir / 'model'}")
    lines.append(f"  metrics: {run_dir / 'metrics.json'}")
    return "\n".join(lines)


def _component_json(kind: str, spec: Any) -> dict[str, Any]:
    """A component for ``ftx plugins --json``: kind, name, summary and its options' JSON schema (pydantic's)."""
    try:
        schema = spec.options.model_json_schema()
    except Exception as exc:  # noqa: BLE001 - one odd options model must not hide the others
        schema = {"error": f"no JSON schema for these options: {exc}"}
    return {"kind": kind, "name": spec.name, "summary": spec.summary, "options": schema}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with each component's options schema).")
@click.option("--all", "show_all", is_flag=True, help="Include built-in plugins and tracebacks of broken ones.")
def plugins(as_json: bool, show_all: bool) -> None:
    """List installed plugins, the components each registers, and plugins that failed to load."""
    manager = _manager()
    registry = manager.registry
    by_plugin: dict[str, dict[str, list[str]]] = {}
    details: dict[str, list[dict[str, Any]]] = {}
    for kind in registry.components:
        for reg in registry.all(kind):
            by_plugin.setdefault(reg.provenance.plugin, {}).setdefault(kind, []).append(reg.spec.name)
            if as_json:
                details.setdefault(reg.provenance.plugin, []).append(_component_json(kind, reg.spec))
    rows = []
    for info in sorted(manager.plugins.values(), key=lambda i: (i.builtin, i.name)):
        if info.builtin and not show_all:
            continue
        rows.append({
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "builtin": info.builtin,
            "status": "ok",
            "registers": by_plugin.get(info.name, {}),
            "components": details.get(info.name, []),
        })
    for broken in registry.broken:
        row = {"name": broken.name, "distribution": broken.distribution, "version": broken.version,
               "status": "error", "error": broken.error, "registers": {}}
        if show_all:
            row["traceback"] = broken.traceback
        rows.append(row)
    conflicts = [{"kind": k, "name": n, "providers": [str(p) for p in provs]}
                 for (k, n), provs in registry.conflicts.items()]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "conflicts": conflicts}, indent=2))
        return
    for row in rows:
        head = f"{row['name']}  ({row['distribution']} {row['version']})"
        if row["status"] == "error":
            click.secho(f"{head}  FAILED TO LOAD", fg="red")
            click.echo(f"    {row['error']}")
            if show_all and row.get("traceback"):
                click.echo("    " + row["traceback"].replace("\n", "\n    "))
            continue
        click.echo(head)
        for kind, names in sorted(row["registers"].items()):
            details = []
            for name in names:
                spec = registry.components[kind][name].spec
                details.append(f"      {name:<16} {spec.summary}")
            click.echo(f"    {kind}s:")
            click.echo("\n".join(details))
    for conflict in conflicts:
        click.secho(f"conflict: {conflict['kind']} {conflict['name']!r} is registered by "
                    + " and ".join(conflict["providers"]), fg="red")


from .scaffold import KINDS as _SCAFFOLD_KINDS

_PLUGIN_KINDS = tuple(_SCAFFOLD_KINDS)


@main.command("new-plugin")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(_PLUGIN_KINDS), help="What the plugin provides.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Where to write it (default: ./ftx-NAME).")
def new_plugin(name: str, kind: str, directory: Path | None) -> None:
    """Scaffold a plugin distribution NAME: entry point, hook, a working component and passing tests."""
    from .scaffold import Names
    from .scaffold import new_plugin as scaffold

    target = scaffold(name, kind, directory)
    names = Names.from_name(name)
    click.echo(f"wrote {names.distribution} ({kind} {names.component!r}) to {target}\n"
               f"next:\n  pip install -e {target}\n  python -m pytest {target}\n"
               f"  then use it in a recipe as its README shows")


if __name__ == "__main__":  # pragma: no cover
    main()
