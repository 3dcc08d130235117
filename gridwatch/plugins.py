"""The plugin host: loads built-in, bundled, directory and installed plugins into pluggy.

Core code asks the host for types by name; it never imports an implementation itself.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from gridwatch import hookspecs
from gridwatch.api import PLUGIN_API_VERSION, Check, Notifier, Options, Source

ENTRY_POINT_GROUP = "gridwatch"
API_ATTRIBUTE = "GRIDWATCH_PLUGIN_API"
"""A plugin module may declare the plugin API version it was written for: ``GRIDWATCH_PLUGIN_API = 1``."""

DEFAULT_PLUGINS = (
    "gridwatch.sources.sqlite",
    "gridwatch.sources.sql",
    "gridwatch.sources.files",
    "gridwatch.sources.http",
    "gridwatch.sources.ingest",
    "gridwatch.checks.sql",
    "gridwatch.notifiers.alertmanager",
    "gridwatch.notifiers.webhook",
    "gridwatch.notifiers.robots",
    "gridwatch.notifiers.log",
)
"""The core's own features, registered through the same hooks outsiders use."""

BUNDLED_PACKAGE = "gridwatch_plugins"


class PluginError(Exception):
    """A plugin could not be loaded or clashes with another; startup must stop."""


@dataclass
class PluginInfo:
    name: str
    origin: str  # "built-in", "bundled", "directory", "distribution"
    location: str = ""  # directory path, or "dist-name version"
    types: dict[str, list[str]] = field(default_factory=dict)  # kind -> type names
    hooks: list[str] = field(default_factory=list)
    api_version: int | None = None
    """the plugin API version the plugin declares (the core's own for built-in and bundled ones);
    None when a third-party plugin declares none"""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "location": self.location,
            "api_version": self.api_version,
            "hooks": self.hooks,
            "types": self.types,
        }


RESERVED_KEYS = {
    "check": {"name", "type", "source", "interval", "timeout"},
    "source": {"type"},
    "notifier": {"type"},
}
"""Config keys the core reads from every check, source or notifier table: no option may reuse them."""

_KINDS = {
    "source": ("register_source_types", Source),
    "check": ("register_check_types", Check),
    "notifier": ("register_notifier_types", Notifier),
}


class PluginHost:
    """Owns the pluggy PluginManager and the type registries it yields."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("gridwatch")
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.types: dict[str, dict[str, type]] = {kind: {} for kind in _KINDS}
        self._type_owner: dict[tuple[str, str], str] = {}
        self._dirs: set[Path] = set()

    @classmethod
    def default(cls, plugin_dirs: Iterable[Path] = (), entry_points: bool = True) -> PluginHost:
        host = cls()
        for modname in DEFAULT_PLUGINS:
            host.register(_import(modname, modname), modname, "built-in")
        host.load_bundled()
        for d in plugin_dirs:
            host.load_dir(d)
        if entry_points:
            host.load_entry_points()
        return host

    def register(self, module: ModuleType | object, name: str, origin: str, location: str = "") -> None:
        if name in self.info:
            raise PluginError(f"plugin {name!r} is registered twice")
        api_version = check_api_version(module, name, location)
        if api_version is None and origin in ("built-in", "bundled"):
            api_version = PLUGIN_API_VERSION  # shipped with this gridwatch: its API by definition
        try:
            self.pm.register(module, name=name)
        except Exception as exc:  # pluggy validates hook names and signatures
            raise PluginError(f"plugin {name!r}: {exc}") from exc
        info = PluginInfo(name, origin, location, api_version=api_version)
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or [])
        for kind, (hook, base) in _KINDS.items():
            impl = getattr(module, hook, None)
            if impl is None:
                continue
            try:
                provided = list(impl() or [])
            except Exception as exc:
                raise PluginError(f"plugin {name!r}: {hook}() failed: {exc!r}") from exc
            for cls in provided:
                self._add_type(kind, base, cls, name)
                info.types.setdefault(kind, []).append(cls.type)
        self.info[name] = info

    def _add_type(self, kind: str, base: type, cls: Any, plugin: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"plugin {plugin!r}: {cls!r} is not a {base.__name__} subclass")
        type_name = getattr(cls, "type", None)
        if not isinstance(type_name, str) or not type_name:
            raise PluginError(f"plugin {plugin!r}: {cls.__name__} has no `type` name")
        taken = sorted(set(getattr(cls, "Options", Options).model_fields) & RESERVED_KEYS.get(kind, set()))
        if taken:
            raise PluginError(
                f"plugin {plugin!r}: {kind} type {type_name!r} names option(s) {', '.join(taken)}, "
                "which the core takes for itself; rename them"
            )
        owner = self._type_owner.get((kind, type_name))
        if owner is not None:
            raise PluginError(f"plugin {plugin!r}: {kind} type {type_name!r} is already provided by {owner!r}")
        self._type_owner[(kind, type_name)] = plugin
        self.types[kind][type_name] = cls

    def load_bundled(self) -> None:
        pkg = _import(BUNDLED_PACKAGE, BUNDLED_PACKAGE)
        for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if mod.name.startswith("_"):
                continue
            full = f"{BUNDLED_PACKAGE}.{mod.name}"
            self.register(_import(full, mod.name), mod.name, "bundled")

    def load_dir(self, directory: Path) -> None:
        """Load every ``*.py`` module of a directory as a plugin named after its file."""
        directory = directory.resolve()
        if directory in self._dirs:
            return
        if not directory.is_dir():
            raise PluginError(f"plugin directory {directory} does not exist")
        self._dirs.add(directory)
        for path in sorted(directory.glob("*.py")):
            if path.name.startswith("_"):
                continue
            modname = f"gridwatch_dir_plugin_{path.stem}"
            try:
                spec = importlib.util.spec_from_file_location(modname, path)
                assert spec and spec.loader
                module = importlib.util.module_from_spec(spec)
                sys.modules[modname] = module
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(modname, None)
                raise PluginError(f"plugin {path.stem!r} ({path}) failed to import: {exc!r}") from exc
            self.register(module, path.stem, "directory", str(directory))

    def load_entry_points(self) -> None:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in self.info:
                continue
            dist = ep.dist
            where = f"{dist.name} {dist.version}" if dist else ""
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} (distribution {where or '?'}) failed to import: {exc!r}"
                ) from exc
            self.register(module, ep.name, "distribution", where)

    def owner(self, kind: str, type_name: str) -> str | None:
        """The name of the plugin that provides a ``kind`` ("source", "check", "notifier") type."""
        return self._type_owner.get((kind, type_name))

    def source_type(self, name: str) -> type[Source] | None:
        return self.types["source"].get(name)

    def check_type(self, name: str) -> type[Check] | None:
        return self.types["check"].get(name)

    def notifier_type(self, name: str) -> type[Notifier] | None:
        return self.types["notifier"].get(name)

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook on every plugin, isolating failures: returns (plugin, result or exc)."""
        results = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                results.append((impl.plugin_name, impl.function(*[kwargs[a] for a in impl.argnames])))
            except Exception as exc:
                results.append((impl.plugin_name, exc))
        return results


def check_api_version(module: object, name: str, location: str = "") -> int | None:
    """The plugin API version a plugin declares (None if it declares none); refuse any other
    than the one this gridwatch supports, naming the plugin, its version and the supported one."""
    declared = getattr(module, API_ATTRIBUTE, None)
    if declared is None:
        return None
    where = f" ({location})" if location else ""
    if isinstance(declared, bool) or not isinstance(declared, int):
        raise PluginError(
            f"plugin {name!r}{where}: {API_ATTRIBUTE} must be an integer, got {declared!r}; "
            f"this gridwatch supports plugin API version {PLUGIN_API_VERSION}"
        )
    if declared != PLUGIN_API_VERSION:
        hint = "upgrade gridwatch" if declared > PLUGIN_API_VERSION else "upgrade the plugin"
        raise PluginError(
            f"plugin {name!r}{where} is written for plugin API version {declared}, but this gridwatch "
            f"supports version {PLUGIN_API_VERSION}: {hint}"
        )
    return declared


def _import(modname: str, plugin: str) -> ModuleType:
    try:
        return importlib.import_module(modname)
    except Exception as exc:
        raise PluginError(f"plugin {plugin!r} failed to import: {exc!r}") from exc
