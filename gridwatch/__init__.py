"""gridwatch: a plugin-based monitoring daemon for community grid management."""

__version__ = "0.1.0"
