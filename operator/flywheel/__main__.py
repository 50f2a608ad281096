"""`python -m flywheel`: run the operator against the cluster in KUBECONFIG or in-cluster config.

Settings come from `FLYWHEEL_*` environment variables (:class:`flywheel.settings.OperatorSettings`);
`--help` lists the few command-line overrides. SIGTERM and SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any, cast

import kopf
from prometheus_client import CollectorRegistry

from flywheel.opmetrics import OperatorMetrics
from flywheel.settings import OperatorSettings
from flywheel.wiring import build_registry
from flywheel.wiring.operator import Operator


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line overrides of the environment settings."""
    parser = argparse.ArgumentParser(
        prog="python -m flywheel",
        description="Run the Flywheel operator. Settings: FLYWHEEL_* environment variables.",
    )
    parser.add_argument(
        "--namespace", "-n", action="append", default=None, help="watch this namespace (repeatable)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until stopped by a signal; the exit code is 0 after a clean shutdown."""
    args = parse_args(argv)
    overrides = {"namespaces": args.namespace} if args.namespace else {}
    settings = OperatorSettings(**overrides)
    operator = Operator(settings=settings, metrics=OperatorMetrics(CollectorRegistry()))
    kopf.configure(verbose=args.verbose or settings.log_level == "DEBUG")
    liveness = (
        f"http://{settings.bind_address}:{settings.liveness_port}/healthz"
        if settings.liveness_port
        else None
    )
    kopf.run(
        # kopf would derive its identity from the login name, which a numeric UID without a
        # passwd entry (the images' 65532) does not have; the host name is the pod name.
        # (kopf types it as its private NewType of str.)
        identity=cast(Any, f"{socket.gethostname()}/{os.getpid()}"),
        registry=build_registry(operator),
        standalone=True,
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        liveness_endpoint=liveness,
        memo=operator,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
