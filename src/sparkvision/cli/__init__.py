"""The command line: ``parser`` (the arguments), ``commands`` (one function per command) and
``main`` (run a command, map its errors to one clear paragraph and an exit status)."""

from sparkvision.cli.main import main

__all__ = ["main"]
