"""The Kubernetes layer: the only code that calls the API.

``client`` (requests, error conversion), ``store`` (run records in ConfigMaps),
``controller`` (the per-run workers), ``runtime`` (one operator process's state).
"""
