"""rocky-operator: Rocky's per-table error containment, one Kubernetes pod per table."""

__version__ = "0.1.0"
