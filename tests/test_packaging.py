"""The package as a release builds it: sdist and wheel without a setuptools warning, every
sub-package and the board's files in the wheel, and the wheel in a fresh venv serving the board."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridwatch.testing import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
BOARD = ("index.html", "board.js", "board.css", "favicon.svg")
LEFT_OUT = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "_artifacts", ".work"
)


def source_packages() -> set[str]:
    """Every package of the source tree: a folder with an ``__init__.py`` (plugins/ installs as
    gridwatch_plugins)."""
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gridwatch").rglob("__init__.py")}
    return found | {"gridwatch_plugins"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """``python -m build`` on a copy of the tree (the work tree gets no build/ or egg-info), as a
    release would: the sdist first, the wheel from the sdist, each in an isolated environment."""
    tmp = tmp_path_factory.mktemp("build")
    shutil.copytree(ROOT, tmp / "src", ignore=LEFT_OUT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # else a warning of its own
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(tmp / "src")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    [sdist] = (tmp / "dist").glob("gridwatch-*.tar.gz")
    [wheel] = (tmp / "dist").glob("gridwatch-*.whl")
    yield sdist, wheel, output


def test_the_build_gives_no_warning(built):
    _, _, output = built
    assert [line for line in output.splitlines() if "warn" in line.lower()] == []


def test_the_wheel_holds_every_package_the_board_and_the_license(built):
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        [license_file] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        license_text = zf.read(license_file)
    packages = {n.removesuffix("/__init__.py").replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == source_packages()
    for name in BOARD:
        assert f"gridwatch/web/board/static/{name}" in names
    assert "gridwatch/py.typed" in names
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert license_text == (ROOT / "LICENSE").read_bytes()


def test_the_sdist_holds_the_license_and_the_board(built):
    sdist, _, _ = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= names
    assert {f"gridwatch/web/board/static/{name}" for name in BOARD} <= names


def test_the_wheel_in_a_fresh_venv_serves_the_board(built, tmp_path):
    _, wheel, _ = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    port = free_port()
    (tmp_path / "gridwatch.toml").write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n[state]\npath = "state.db"\n', encoding="utf-8"
    )
    log = (tmp_path / "run.log").open("wb")  # closed in the finally below
    # started from tmp_path with only the venv's bin on PATH: the installed package, not the source tree
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [str(venv / "bin" / "gridwatch"), "run", "-c", "gridwatch.toml"], cwd=tmp_path, stdout=log, stderr=log, env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    return True
            except OSError:
                return False

        try:
            wait_for(answers, 60, "the installed gridwatch to answer /healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{(tmp_path / 'run.log').read_text(errors='replace')}") from None
        for path, expected in [("/", "index.html"), ("/board/board.js", "board.js"), ("/board/board.css", "board.css")]:
            with urllib.request.urlopen(base + path, timeout=10) as answer:
                assert answer.status == 200
                assert answer.read() == (ROOT / "gridwatch/web/board/static" / expected).read_bytes()
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import gridwatch.web.board as b; print(b.STATIC)"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=True,
        ).stdout.strip()
        assert Path(where).is_relative_to(venv), where
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
