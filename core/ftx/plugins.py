"""Plugin discovery: one plugin manager per run, built-ins first, then the ``ftx`` entry points.

Each entry point is loaded in its own ``try``: a broken plugin is recorded with its error and
reported by ``ftx plugins``; it fails only the recipes that need it. Environment escape hatches:

* ``FTX_LOAD_PLUGINS=a,b``: load only these entry points (built-ins always load);
* ``FTX_DISABLE_PLUGINS=a,b``: skip these entry points;
* ``FTX_TRACE_PLUGINS=1``: print every hook call to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pluggy
from ftx_hookspecs import KIND_BY_HOOK, PROJECT_NAME, ComponentSpec, specs

from .registry import BrokenPlugin, Provenance, Registry

ENTRY_POINT_GROUP = PROJECT_NAME
BUILTIN_PLUGINS: tuple[str, ...] = ("ftx.builtins.console", "ftx.builtins.metrics_log", "ftx.builtins.loggers")

REGISTRATION_HOOKS: tuple[str, ...] = tuple(KIND_BY_HOOK)
"""Every registration hook, from ftx_hookspecs' table of component kinds."""


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its name and where it came from."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    builtin: bool


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


@dataclass
class FtxPluginManager:
    """The run's pluggy manager, the plugins it holds and the registry they filled."""

    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    registry: Registry = field(default_factory=Registry)
    tracing: bool = False

    @property
    def hook(self) -> HookRelay:
        """A typed facade over ``pm.hook`` for the lifecycle hooks."""
        return HookRelay(self.pm)

    def load_recipe(self, path: Path | str, overrides: Iterable[str] = ()) -> Any:
        """Read and validate a recipe against this manager's registry, then broadcast ``ftx_recipe_loaded``."""
        from .recipe import load_recipe

        recipe = load_recipe(path, self.registry, overrides)
        self.hook.recipe_loaded(recipe.to_dict(), recipe.path)
        return recipe

    def register_plugin(self, plugin: Any, info: PluginInfo) -> bool:
        """Register one plugin object; on failure record it as broken and return False."""
        try:
            self.pm.register(plugin, name=info.name)
            self._check_hooks(plugin, info)
        except Exception as exc:  # noqa: BLE001 - any plugin error is reported, not raised
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._mark_broken(info, exc)
            return False
        self.plugins[info.name] = info
        return True

    def _check_hooks(self, plugin: Any, info: PluginInfo) -> None:
        """Fail a plugin that implements a hook ftx does not define (a misspelled hook)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise pluggy.PluginValidationError(
                plugin, f"plugin {info.name!r} implements a hook ftx does not define: {exc}"
            ) from exc

    def _mark_broken(self, info: PluginInfo, exc: BaseException) -> None:
        self.registry.broken.append(
            BrokenPlugin(
                name=info.name,
                distribution=info.distribution,
                version=info.version,
                error=f"{type(exc).__name__}: {exc}",
                traceback="".join(traceback.format_exception(exc)),
            )
        )

    def collect_components(self) -> None:
        """Call every registration hook, one implementation at a time, to know who registered what."""
        for hook_name in REGISTRATION_HOOKS:
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                info = self.plugins.get(impl.plugin_name)
                provenance = Provenance(
                    plugin=impl.plugin_name,
                    distribution=info.distribution if info else None,
                    version=info.version if info else None,
                )
                register = _make_register(self.registry, provenance, hook_name)
                if self.tracing:
                    print(f"{hook_name} [{impl.plugin_name}]", file=sys.stderr)
                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001
                    if info is not None:
                        self._mark_broken(info, exc)


def _make_register(registry: Registry, provenance: Provenance, hook_name: str) -> Callable[[ComponentSpec], None]:
    expected = KIND_BY_HOOK[hook_name].name

    def register(spec: ComponentSpec) -> None:
        if not isinstance(spec, ComponentSpec) or spec.kind != expected:
            raise TypeError(f"{hook_name} expects {expected} specs, got {spec!r}")
        registry.add(spec, provenance)

    return register


@dataclass(frozen=True)
class HookRelay:
    """One typed method per lifecycle hook, so the core's calls are checked."""

    pm: pluggy.PluginManager

    def recipe_loaded(self, recipe: Mapping[str, Any], path: Path | None) -> None:
        self.pm.hook.ftx_recipe_loaded(recipe=recipe, path=path)

    def run_start(self, run: Any) -> None:
        self.pm.hook.ftx_run_start(run=run)

    def log_metrics(self, run: Any, step: int, metrics: Mapping[str, float]) -> None:
        self.pm.hook.ftx_log_metrics(run=run, step=step, metrics=metrics)

    def checkpoint_saved(self, run: Any, step: int, path: Path) -> None:
        self.pm.hook.ftx_checkpoint_saved(run=run, step=step, path=path)

    def run_end(self, run: Any, metrics: Mapping[str, Any] | None, error: BaseException | None) -> None:
        self.pm.hook.ftx_run_end(run=run, metrics=metrics, error=error)


def _select(eps: Iterable[EntryPoint]) -> list[EntryPoint]:
    only = _env_list("FTX_LOAD_PLUGINS")
    disabled = _env_list("FTX_DISABLE_PLUGINS") or set()
    chosen = []
    for ep in eps:
        if only is not None and ep.name not in only:
            continue
        if ep.name in disabled:
            continue
        chosen.append(ep)
    return chosen


def make_plugin_manager(
    *, builtins: Iterable[str] = BUILTIN_PLUGINS, load_entry_points: bool = True, extra_plugins: Iterable[Any] = ()
) -> FtxPluginManager:
    """Build a fresh plugin manager: hookspecs, built-ins, entry points, then the registry.

    :param builtins: module paths registered as built-in plugins.
    :param load_entry_points: ``False`` in tests that want only what they register.
    :param extra_plugins: plugin objects (modules or instances) registered after entry points.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(specs)
    # historic: every plugin registered from now on gets this call as it registers
    pm.hook.ftx_addhooks.call_historic(kwargs={"pluginmanager": pm})
    manager = FtxPluginManager(pm)
    if os.environ.get("FTX_TRACE_PLUGINS"):
        manager.tracing = True
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()

    ftx_version = _dist_version("ftx")  # read once: each lookup scans every installed distribution
    for module_path in builtins:
        info = PluginInfo(module_path, "ftx", ftx_version, module_path, builtin=True)
        try:
            module = importlib.import_module(module_path)
        except Exception as exc:  # noqa: BLE001
            manager._mark_broken(info, exc)
            continue
        manager.register_plugin(module, info)

    if load_entry_points:
        hookspecs_version = _dist_version("ftx-hookspecs")
        for ep in _select(entry_points(group=ENTRY_POINT_GROUP)):
            dist = getattr(ep, "dist", None)
            meta = dist.metadata if dist is not None else None  # parsed once: it is read from disk each time
            info = PluginInfo(
                name=ep.name,
                distribution=meta["Name"] if meta is not None else None,
                version=meta["Version"] if meta is not None else None,
                module=ep.value,
                builtin=False,
            )
            if pm.has_plugin(ep.name):
                continue
            mismatch = hookspecs_mismatch(dist, hookspecs_version)
            if mismatch:
                manager._mark_broken(info, IncompatiblePlugin(mismatch))
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - reported by `ftx plugins`, fails only its recipes
                manager._mark_broken(info, exc)
                continue
            manager.register_plugin(plugin, info)

    for index, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        manager.register_plugin(plugin, PluginInfo(name, None, None, name, builtin=False))

    manager.collect_components()
    return manager


class IncompatiblePlugin(Exception):
    """A plugin built for hook specifications this installation does not have."""


def hookspecs_mismatch(dist: Any, installed: str | None = "") -> str | None:
    """Why ``dist`` cannot work with the installed ``ftx-hookspecs`` (version ``installed``; looked up when
    not given), or ``None`` when it can."""
    if dist is None:
        return None
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import Version

    if installed == "":
        installed = _dist_version("ftx-hookspecs")
    if installed is None:
        return None
    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.lower().replace("_", "-") != "ftx-hookspecs":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if not req.specifier.contains(Version(installed), prereleases=True):
            name = dist.metadata["Name"]
            return (f"{name} {dist.version} needs ftx-hookspecs{req.specifier} but {installed} is installed; "
                    f"upgrade ftx (pip install -U ftx ftx-hookspecs) or install a {name} built for {installed}")
    return None


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
