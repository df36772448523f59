"""The registry: every named component the installed plugins registered, with who registered it."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from ftx_hookspecs import COMPONENT_KINDS, ComponentSpec

from .errors import ComponentNotFound, Problem

KINDS: tuple[str, ...] = tuple(kind.name for kind in COMPONENT_KINDS)

FIRST_PARTY_FILE = "first_party.toml"
"""Package data: ftx's first-party distributions and what each registers (read only for install hints)."""


@functools.lru_cache(maxsize=1)
def known_distributions() -> dict[tuple[str, str], tuple[str, str]]:
    """``(kind, name) -> (distribution, folder)`` of first-party components, so a recipe naming one that is
    not installed can say what to install. Third-party names are simply "not installed"."""
    from importlib.resources import files

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    data = tomllib.loads(files(__package__).joinpath(FIRST_PARTY_FILE).read_text(encoding="utf-8"))
    return {(kind, name): (dist, table["folder"])
            for dist, table in data.items() for kind, names in table.items() if kind != "folder" for name in names}


@dataclass(frozen=True)
class Provenance:
    """Which plugin, distribution and version registered a component."""

    plugin: str
    distribution: str | None
    version: str | None

    def __str__(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return f"plugin {self.plugin}"


@dataclass(frozen=True)
class Registered:
    """A component spec with its provenance."""

    spec: ComponentSpec
    provenance: Provenance


@dataclass
class Registry:
    """Components by kind and name; conflicts and plugin failures are kept, not raised."""

    components: dict[str, dict[str, Registered]] = field(default_factory=lambda: {k: {} for k in KINDS})
    conflicts: dict[tuple[str, str], list[Provenance]] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    def add(self, spec: ComponentSpec, provenance: Provenance) -> None:
        """Record a component; a second registration of the same kind and name is a conflict."""
        table = self.components.setdefault(spec.kind, {})
        existing = table.get(spec.name)
        if existing is not None:
            self.conflicts.setdefault((spec.kind, spec.name), [existing.provenance]).append(provenance)
            return
        table[spec.name] = Registered(spec, provenance)

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self.components.get(kind, {}))

    def all(self, kind: str) -> Iterable[Registered]:
        """Every registered component of ``kind``, by name."""
        table = self.components.get(kind, {})
        return (table[n] for n in sorted(table))

    def get(self, kind: str, name: str, path: str = "") -> Registered:
        """The component of ``kind`` called ``name``, or a :class:`ComponentNotFound` that says what to do."""
        conflict = self.conflicts.get((kind, name))
        if conflict:
            who = " and ".join(str(p) for p in conflict)
            raise ComponentNotFound(
                Problem(path, f"{kind} {name!r} is registered by more than one plugin ({who}); "
                        "uninstall one, or set FTX_DISABLE_PLUGINS to the one you do not want")
            )
        found = self.components.get(kind, {}).get(name)
        if found is not None:
            return found
        raise ComponentNotFound(Problem(path, self.missing_message(kind, name)))

    def missing_message(self, kind: str, name: str) -> str:
        """Explain a missing component: did-you-mean, what is installed, what to install, what broke."""
        installed = self.names(kind)
        known_names = known_distributions()
        not_installed = [n for (k, n) in known_names if k == kind and n not in installed]
        if name in not_installed:  # a first-party name whose distribution is absent: no guessing
            parts = [f"{kind} {name!r} is not installed."]
            close = [name]
        else:
            parts = [f"unknown {kind} {name!r}."]
            close = (difflib.get_close_matches(name, installed, n=1)
                     or difflib.get_close_matches(name, not_installed, n=1))
            if close:
                parts.append(f"Did you mean {close[0]!r}?")
        parts.append(f"Installed {kind}s: {', '.join(installed) if installed else '(none)'}.")
        wanted = name if (kind, name) in known_names else (close[0] if close else name)
        known = known_names.get((kind, wanted))
        if known and wanted not in installed:
            dist, folder = known
            parts.append(
                f"{kind} {wanted!r} ships in the distribution {dist!r}, which is not installed: "
                f"install it with `pip install {dist}` (or `pip install -e {folder}` from an ftx checkout)."
            )
        for broken in self.broken:
            parts.append(f"Note: plugin {broken.label} failed to load ({broken.error_line}); run `ftx plugins` for details.")
        return " ".join(parts)


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin whose import or registration raised; reported, never silently skipped."""

    name: str
    distribution: str | None
    version: str | None
    error: str
    traceback: str = ""

    @property
    def label(self) -> str:
        """``name (distribution version)`` for messages."""
        if self.distribution:
            return f"{self.name!r} ({self.distribution} {self.version or ''})".replace(" )", ")")
        return repr(self.name)

    @property
    def error_line(self) -> str:
        """The last line of the error, for one-line messages."""
        return self.error.strip().splitlines()[-1] if self.error.strip() else "unknown error"
