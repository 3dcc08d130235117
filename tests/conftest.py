"""Shared fixtures.  The machinery lives in tests/components.py; keep this file small."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.components import Alertmanager, Launcher, MariaDBServer, PostgresServer, Prometheus


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session (``.url``, ``.dsn``, ``.createdb()``)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    """A real MariaDB server for the whole session (``.url``, ``.createdb()``, ``.admin()``)."""
    with MariaDBServer() as server:
        yield server


@pytest.fixture
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher[Alertmanager]]:
    """``alertmanager(config=None, **kwargs)`` starts a real Alertmanager; all stop at teardown."""
    with Launcher(Alertmanager, tmp_path_factory) as launch:
        yield launch


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher[Prometheus]]:
    """``prometheus(config=None, **kwargs)`` starts a real Prometheus; all stop at teardown."""
    with Launcher(Prometheus, tmp_path_factory) as launch:
        yield launch
