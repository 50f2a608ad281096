"""A local Kubernetes cluster for tests and development, from pinned upstream binaries.

Test infrastructure, not a product component: `python -m devcluster up|down|status|env` (run
with `PYTHONPATH=hack`; the Makefile's `cluster-*` targets do this), and the pytest fixtures in
`tests/cluster/conftest.py`. No Docker is needed: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler run as local processes on 127.0.0.1.
"""
