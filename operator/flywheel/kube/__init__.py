"""The operator's Kubernetes and HTTP I/O.

:mod:`.api` is the small interface controllers' reads and writes go through (an in-memory fake
implements it for unit tests); :mod:`.client` implements it over lightkube, the typed async
client; :mod:`.errors` classifies what the API server answers; :mod:`.podhttp` talks to serving
pods and Prometheus.
"""
