"""`python -m devcluster up|down|status|env [--dir DIR]`: the local cluster from the shell."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from devcluster.binaries import BuildError, default_binaries, ensure_binaries
from devcluster.controlplane import Cluster, ClusterError
from devcluster.processes import rss_kib

DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".cluster"


def _cluster(directory: Path, build: bool, with_node: bool, nodes: int) -> Cluster:
    binaries = ensure_binaries() if build else default_binaries()
    return Cluster(
        directory=directory.resolve(), binaries=binaries, with_node=with_node, nodes=nodes
    )


def cmd_up(cluster: Cluster) -> int:
    """Start the cluster or reuse a running one (restarting only its dead components)."""
    started = time.monotonic()
    before = cluster.running()
    cluster.up()
    dead = [name for name, alive in before.items() if not alive]
    if not dead:
        verb = "reused"
    elif len(dead) < len(before):
        verb = f"reused, restarted {', '.join(dead)} in {time.monotonic() - started:.1f}s"
    else:
        verb = f"started in {time.monotonic() - started:.1f}s"
    print(f"cluster {verb}: {cluster.directory}", file=sys.stderr)
    print(
        f'eval "$(make -s cluster-env)"   # or: export KUBECONFIG={cluster.kubeconfig}',
        file=sys.stderr,
    )
    return 0


def cmd_down(cluster: Cluster) -> int:
    """Stop every component."""
    cluster.down()
    print(f"cluster stopped: {cluster.directory}", file=sys.stderr)
    return 0


def cmd_status(cluster: Cluster) -> int:
    """Print components, pids and memory; exit 3 unless all run."""
    state = cluster.load_state()
    running = cluster.running(state)
    total = 0
    for name in cluster.components:
        pid = state.pids.get(name)
        rss, peak = rss_kib(pid) if pid and running[name] else (0, 0)
        total += rss
        print(
            f"{name:24} {'running' if running[name] else 'stopped':8} pid={pid or '-':<8} "
            f"rss={rss / 1024:7.1f} MiB peak={peak / 1024:7.1f} MiB"
        )
    print(f"{'total':24} {'':8} {'':12} rss={total / 1024:7.1f} MiB")
    if state.ports:
        print(
            f"api server: https://127.0.0.1:{state.ports['apiserver']}",
            f"kubeconfig: {cluster.kubeconfig}",
        )
    return 0 if all(running.values()) else 3


def cmd_env(cluster: Cluster) -> int:
    """Print shell exports for the cluster."""
    print(f"export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}")
    print(f'export PATH={shlex.quote(str(cluster.binaries.bin_dir))}:"$PATH"')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "env", "build"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="the cluster's state directory"
    )
    parser.add_argument(
        "--no-node",
        action="store_true",
        help="control plane only (no root needed; pods stay Pending)",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="N",
        help="node agents, each with its own pod network and zone (1-8; a running cluster "
        "keeps its nodes)",
    )
    args = parser.parse_args(argv)
    try:
        cluster = _cluster(
            args.dir,
            build=args.command in {"up", "build"},
            with_node=not args.no_node,
            nodes=args.nodes,
        )
        if args.command == "build":
            print(cluster.binaries.bin_dir)
            return 0
        command = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env}
        return command[args.command](cluster)
    except (BuildError, ClusterError) as error:
        print(f"devcluster: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
