"""`python -m prodguardian` runs the CLI."""

from prodguardian.cli import entry_point

entry_point()
