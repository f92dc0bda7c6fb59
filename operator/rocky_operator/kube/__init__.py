"""The Kubernetes layer: the only code that calls the API (client), stores run records in ConfigMaps (store) and drives runs (controller)."""
