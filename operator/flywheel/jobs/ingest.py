"""`python -m flywheel.jobs.ingest`: read, validate, snapshot and profile one Dataset source.

Input: the Dataset spec as JSON (`--spec`), its identity, the artifacts claim and the previous
version's digest. Output: the snapshot published under
`datasets/<namespace>/<name>/<digest>/{data.parquet,stats.json,schema.json}` and a result
document written to the termination message (and stdout):
`{"ok": true, "version", "digest", "rows", "columns", "snapshotURI", "statsURI", "changed"}` or
`{"ok": false, "reason", "message"}`. Exit code 0 on success, 2 on invalid data (not worth a
retry), 1 when the source is unavailable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from flywheel.api.dataset import DatasetSpec
from flywheel.artifacts import MOUNT_ROOT, ArtifactStore, pvc_uri
from flywheel.data.errors import DatasetError, SourceUnavailable, ValidationFailed
from flywheel.data.schema import ResolvedSchema, resolve_schema
from flywheel.data.snapshot import canonical_frame, content_digest, parquet_bytes, short_version
from flywheel.data.sources import read_source
from flywheel.data.stats import compute_stats
from flywheel.data.validation import validate

TERMINATION_LOG = Path("/dev/termination-log")
MAX_MESSAGE = 3500


def ingest(
    spec: DatasetSpec,
    *,
    namespace: str,
    name: str,
    claim: str,
    store: ArtifactStore,
    previous_digest: str | None,
) -> dict[str, Any]:
    """Run the whole ingest; the result document. Raises DatasetError subclasses."""
    started = time.perf_counter()
    frame = read_source(spec.source, pvc_root=store.root)
    schema = resolve_schema(frame, spec.data_schema)
    frame = canonical_frame(frame, schema.columns)
    previous = _previous_schema(store, claim, namespace, name, previous_digest)
    failures = validate(frame, schema, spec.validation, previous)
    if failures:
        raise ValidationFailed(failures)
    digest = content_digest(frame)
    version_dir = pvc_uri(claim, "datasets", namespace, name, digest.removeprefix("sha256:"))
    identity = {
        "namespace": namespace,
        "name": name,
        "version": short_version(digest),
        "digest": digest,
    }
    stats = compute_stats(
        frame, schema, bins=spec.statistics.bins, top_k=spec.statistics.top_k, identity=identity
    )
    created = store.publish(
        version_dir,
        {
            "data.parquet": parquet_bytes(frame),
            "stats.json": json.dumps(stats, indent=1).encode(),
            "schema.json": json.dumps(schema.to_json(), indent=1).encode(),
        },
    )
    return {
        "ok": True,
        "version": short_version(digest),
        "digest": digest,
        "rows": len(frame),
        "columns": len(frame.columns),
        "snapshotURI": f"{version_dir}/data.parquet",
        "statsURI": f"{version_dir}/stats.json",
        "changed": digest != previous_digest,
        "published": created,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _previous_schema(
    store: ArtifactStore, claim: str, namespace: str, name: str, digest: str | None
) -> ResolvedSchema | None:
    if not digest:
        return None
    uri = pvc_uri(claim, "datasets", namespace, name, digest.removeprefix("sha256:"), "schema.json")
    if not store.exists(uri):
        return None
    return ResolvedSchema.from_json(json.loads(store.read_bytes(uri)))


def report(result: dict[str, Any], termination_log: Path) -> None:
    """Write the result where the operator reads it (termination message) and to stdout."""
    text = json.dumps(result, separators=(",", ":"))
    if len(text) > MAX_MESSAGE and "message" in result:
        result = {**result, "message": result["message"][: MAX_MESSAGE - 200] + " ..."}
        text = json.dumps(result, separators=(",", ":"))
    print(text, flush=True)
    with contextlib.suppress(OSError):  # outside a pod there is no termination log
        termination_log.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ingest Job."""
    parser = argparse.ArgumentParser(prog="python -m flywheel.jobs.ingest", description=__doc__)
    parser.add_argument("--spec", required=True, help="the Dataset spec as JSON")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--claim", required=True, help="the artifacts PersistentVolumeClaim")
    parser.add_argument("--previous-digest", default="")
    parser.add_argument("--artifacts-root", type=Path, default=MOUNT_ROOT)
    parser.add_argument("--termination-log", type=Path, default=TERMINATION_LOG)
    args = parser.parse_args(argv)
    try:
        result = ingest(
            DatasetSpec.model_validate(json.loads(args.spec)),
            namespace=args.namespace,
            name=args.name,
            claim=args.claim,
            store=ArtifactStore(args.artifacts_root),
            previous_digest=args.previous_digest or None,
        )
    except DatasetError as error:
        report({"ok": False, "reason": error.reason, "message": str(error)}, args.termination_log)
        return 1 if isinstance(error, SourceUnavailable) else 2
    report(result, args.termination_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
