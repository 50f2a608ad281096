"""Entrypoints of the Jobs the operator creates (they run in the operator image).

Each reports its result through the pod's termination message, a small JSON document, so Jobs
need no write access to the Kubernetes API.
"""
