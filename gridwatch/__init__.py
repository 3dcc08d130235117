"""gridwatch: a plugin-based monitoring daemon for community grid management."""

__version__ = "0.1.0"

from gridwatch.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
