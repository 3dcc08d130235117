"""The plugin contract: every hook a gridwatch plugin may implement.

Built-in features use these same hooks, so anything the core can do a plugin can do.
Implement a hook with ``@gridwatch.hookimpl`` on a module-level function of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from gridwatch.api import Check, Notifier, Source
    from gridwatch.settings import Settings

hookspec = pluggy.HookspecMarker("gridwatch")
hookimpl = pluggy.HookimplMarker("gridwatch")


class Running(Protocol):
    """What ``startup`` and ``shutdown`` are given: the running daemon, as far as a plugin may
    rely on it."""

    config_path: Path
    settings: Settings
    clock: Callable[[], datetime]


@hookspec
def register_source_types() -> list[type[Source]]:
    """Return the source types (subclasses of ``gridwatch.api.Source``) this plugin provides."""


@hookspec
def register_check_types() -> list[type[Check]]:
    """Return the check types (subclasses of ``gridwatch.api.Check``) this plugin provides."""


@hookspec
def register_notifier_types() -> list[type[Notifier]]:
    """Return the notifier types (subclasses of ``gridwatch.api.Notifier``) this plugin provides."""


@hookspec
def default_rules() -> list[dict[str, Any]]:
    """Return alert rules, in the shape of a ``[[rules]]`` table, that apply unless the config
    overrides or disables them by their ``alert`` name."""


@hookspec(firstresult=True)
def daily_lights(db: Any, grid_id: str, since: date) -> list[tuple[date, str]] | None:
    """Return a grid's kept daily lights from ``since`` on, oldest first (``db``: the state
    database, a sqlite-utils Database); None if this plugin keeps none."""


@hookspec
def startup(daemon: Running) -> None:
    """Called once the daemon has loaded its config and is about to start its checks."""


@hookspec
def shutdown(daemon: Running) -> None:
    """Called when the daemon stops, after the last check has finished."""
