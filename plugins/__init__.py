"""The domain checks bundled with gridwatch (installed as ``gridwatch_plugins``).

Every module in this package is loaded as a plugin at start-up.
"""
