"""Shared fixtures: a private preset cache per test session, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Presets built once per test session, away from the user's cache."""
    path = tmp_path_factory.mktemp("preset-cache")
    return path


@pytest.fixture
def cli_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["COLOBENCH_CACHE"] = str(cache_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colobench", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
