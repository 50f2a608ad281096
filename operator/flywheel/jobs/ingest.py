"""`python -m flywheel.jobs.ingest`: read, validate, snapshot and profile one Dataset source.

Input: :class:`~flywheel.interfaces.jobs.IngestArgs` (the Dataset spec, its identity, the
artifacts claim and the previous version's digest). Output: the snapshot published under
`datasets/<namespace>/<name>/<digest>/{data.parquet,stats.json,schema.json}` and an
:class:`~flywheel.interfaces.jobs.IngestReport` or a
:class:`~flywheel.interfaces.jobs.JobFailure` in the termination message (and on stdout). Exit
code `RETRYABLE` when the source is unavailable for now (a transient failure, see
:data:`~flywheel.interfaces.jobs.SOURCE_TRANSIENT`), `NOT_RETRYABLE` for a source that cannot be
read as specified (a permanent failure) and for data that cannot be ingested as it is.
"""

from __future__ import annotations

import json
import sys
import time

from flywheel.api.dataset import DatasetSpec
from flywheel.artifacts import ArtifactStore, pvc_uri
from flywheel.data.errors import DatasetError, ValidationFailed
from flywheel.data.schema import ResolvedSchema, resolve_schema
from flywheel.data.snapshot import canonical_frame, content_digest, parquet_bytes, short_version
from flywheel.data.sources import read_source
from flywheel.data.stats import compute_stats
from flywheel.data.validation import validate
from flywheel.interfaces.jobs import (
    ExitCode,
    IngestArgs,
    IngestReport,
    JobFailure,
    write_result,
)


def ingest(
    spec: DatasetSpec,
    *,
    namespace: str,
    name: str,
    claim: str,
    store: ArtifactStore,
    previous_digest: str | None,
) -> IngestReport:
    """Run the whole ingest; its report. Raises DatasetError subclasses."""
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
    return IngestReport(
        version=short_version(digest),
        digest=digest,
        rows=len(frame),
        columns=len(frame.columns),
        snapshot_uri=f"{version_dir}/data.parquet",
        stats_uri=f"{version_dir}/stats.json",
        changed=digest != previous_digest,
        published=created,
        seconds=round(time.perf_counter() - started, 3),
    )


def _previous_schema(
    store: ArtifactStore, claim: str, namespace: str, name: str, digest: str | None
) -> ResolvedSchema | None:
    if not digest:
        return None
    uri = pvc_uri(claim, "datasets", namespace, name, digest.removeprefix("sha256:"), "schema.json")
    if not store.exists(uri):
        return None
    return ResolvedSchema.from_json(json.loads(store.read_bytes(uri)))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ingest Job."""
    words = sys.argv[1:] if argv is None else argv
    if words in (["--help"], ["-h"]):
        print(__doc__)
        return ExitCode.SUCCESS
    args = IngestArgs.parse(words)
    try:
        report = ingest(
            args.spec,
            namespace=args.namespace,
            name=args.name,
            claim=args.claim,
            store=ArtifactStore(args.artifacts_root),
            previous_digest=args.previous_digest or None,
        )
    except DatasetError as error:
        write_result(JobFailure(reason=error.reason, message=str(error)), args.termination_log)
        return ExitCode.RETRYABLE if error.retryable else ExitCode.NOT_RETRYABLE
    write_result(report, args.termination_log)
    return ExitCode.SUCCESS


if __name__ == "__main__":
    sys.exit(main())
