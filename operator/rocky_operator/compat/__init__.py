"""Drop-in for Rocky users: their ``rocky.toml`` and their ``dagster-rocky`` code, unchanged.

* :mod:`.rocky_toml` translates a replication pipeline of a ``rocky.toml`` into a RockyRun
  (pure: the caller passes the environment; credentials become Secret references).
* :mod:`.rocky_cli` is ``rocky-operator-rocky``, the subset of Rocky's CLI that ``rocky-sdk`` /
  ``dagster_rocky.RockyResource(binary_path=...)`` call, on the cluster or the local executor.

docs/rocky-compat.md has the table of every key and what it becomes.
"""
