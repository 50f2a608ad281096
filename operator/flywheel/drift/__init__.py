"""Drift statistics on binned counts: pure numpy, nothing Kubernetes-specific (issue 9)."""
