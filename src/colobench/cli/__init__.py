"""The `colobench` command: parsing, printing, exit codes. Everything else is `colobench.api`;
tables are `colobench.report`'s. One module per group of commands, each registering on the one
typer `app` (see `app` for the exit codes and the stdout/stderr split)."""

from colobench.cli import environment, fake_server, predict, profile, results, run
from colobench.cli.app import app, main

__all__ = ["app", "environment", "fake_server", "main", "predict", "profile", "results", "run"]
