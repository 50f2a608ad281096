"""Unit tests of the local node agent's pure parts (hack/devcluster/node): no cluster, no root."""
