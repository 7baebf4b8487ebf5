"""The `envctl` command line."""

from envctl.cli.app import app, main

__all__ = ["app", "main"]
