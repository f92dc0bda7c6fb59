"""rocky-runner: copies one table, classifies any failure, writes a result message."""

__version__ = "0.1.0"
