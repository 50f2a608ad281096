"""The local node: a small stand-in for the kubelet that runs pods as local processes.

Test infrastructure only. See :mod:`devcluster.node.agent` for the agent, :mod:`.pods` for a
pod's lifecycle, :mod:`.sandbox` for namespaces and roots, :mod:`.network` for the bridge,
:mod:`.volumes` and :mod:`.storage` for volumes, and docs/local-cluster.md for what it does not
emulate.
"""
