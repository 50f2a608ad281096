"""`python -m devcluster.node --kubeconfig K --dir D --api-port P`: run the node agent."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from devcluster.node.agent import Agent, default_node_name
from devcluster.node.api import Api
from devcluster.node.kubelet import Tls
from devcluster.node.network import PodNetwork

DEFAULT_IMAGE_COMMANDS = {
    "ghcr.io/flywheel-dev/flywheel-operator": ["python", "-m", "flywheel"],
    "ghcr.io/flywheel-dev/flywheel-serving": ["python", "-m", "flywheel_serving"],
}


def main(argv: list[str] | None = None) -> int:
    """Run the agent until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m devcluster.node", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="state: pods, volumes")
    parser.add_argument(
        "--api-port", type=int, required=True, help="the API server's loopback port"
    )
    parser.add_argument("--node-name", default=default_node_name())
    parser.add_argument("--version", default="v1.35.8")
    parser.add_argument("--network-index", type=int, default=0, help="pod network 10.244.<i>.0/24")
    parser.add_argument(
        "--peer-network-index",
        type=int,
        action="append",
        default=[],
        help="the pod network of another node of the cluster (repeat per node): routed to",
    )
    parser.add_argument("--zone", default="local-a", help="the topology.kubernetes.io/zone label")
    parser.add_argument("--kubelet-cert", type=Path, help="serve the kubelet API with this cert")
    parser.add_argument("--kubelet-key", type=Path)
    parser.add_argument("--client-ca", type=Path, help="the CA of the kubelet API's clients")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if os.geteuid() != 0:
        print(
            "devcluster.node: the local node needs root (network namespaces, mounts); "
            "run as root or start only the control plane",
            file=sys.stderr,
        )
        return 2
    # ip, nsenter, chroot and mount live in sbin directories that a minimal PATH may lack.
    path = os.environ.get("PATH", "").split(":")
    os.environ["PATH"] = ":".join(
        [
            *path,
            *(
                d
                for d in ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin")
                if d not in path
            ),
        ]
    )
    images = dict(DEFAULT_IMAGE_COMMANDS)
    images.update(json.loads(os.environ.get("FLYWHEEL_NODE_IMAGE_COMMANDS", "{}")))
    backoff = float(os.environ.get("FLYWHEEL_NODE_BACKOFF_SECONDS", "10"))

    async def run() -> None:
        async with Api.from_kubeconfig(args.kubeconfig) as api:
            agent = Agent(
                api,
                directory=args.dir,
                node_name=args.node_name,
                api_port=args.api_port,
                version=args.version,
                image_commands=images,
                backoff_base=backoff,
                plan=PodNetwork(args.network_index),
                peers=tuple(PodNetwork(i) for i in args.peer_network_index),
                zone=args.zone,
                kubelet_tls=(
                    Tls(args.kubelet_cert, args.kubelet_key, args.client_ca)
                    if args.kubelet_cert
                    else None
                ),
            )
            await agent.run()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
