"""Subcommands of ``rocky-operator``; see :mod:`rocky_operator.cli`."""
