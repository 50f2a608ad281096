"""`python -m flywheel.jobs.ingest`: read, validate, snapshot and profile one Dataset source.

Input: :class:`~flywheel.interfaces.jobs.IngestArgs` (the Dataset spec, its identity, the
artifacts claim, the source size limit and the previous version's digest). Output: the snapshot
published under `datasets/<namespace>/<name>/<digest>/{data.parquet,stats.json,schema.json}` and
an :class:`~flywheel.interfaces.jobs.IngestReport` or a
:class:`~flywheel.interfaces.jobs.JobFailure` in the termination message (and on stdout). Exit
code `RETRYABLE` when the source is unavailable for now (a transient failure, see
:data:`~flywheel.interfaces.jobs.SOURCE_TRANSIENT`), `NOT_RETRYABLE` for a source that cannot be
read as specified (a permanent failure) and for data that cannot be ingested as it is.

Memory does not grow with the data: the source is made local (an HTTP body spooled beside the
versions), then read in batches, once when its columns' types agree from the first batch to the
last, twice when they do not. (1) The snapshot is written as Parquet as it streams, while every
value of the label and the features decides their types; a column that must hold numbers but
does not fails validation; a column whose batches disagreed (integers, then text far down the
file) has the snapshot written again in the settled types. (2) Each column of the snapshot is
profiled on its own for the rules, the label checks and the statistics, and the digest is
computed from it a column at a time. Everything happens in a staging directory that is
renamed into place only when every check passed, so a failed ingest leaves nothing behind and
the last good version stays current.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
from pathlib import Path

from flywheel.api.dataset import DatasetSpec
from flywheel.artifacts import ArtifactStore, pvc_uri
from flywheel.data.columns import ColumnTyping, Kind
from flywheel.data.errors import DatasetError, ValidationFailed
from flywheel.data.examine import examine
from flywheel.data.schema import (
    ResolvedSchema,
    must_be_numbers,
    resolve_schema,
    used_columns,
)
from flywheel.data.snapshot import short_version, write_as_typed, write_snapshot
from flywheel.data.sources import LocalSource, open_source
from flywheel.data.stats import compute_stats
from flywheel.data.transfer import Limits
from flywheel.data.validation import type_failures, validate
from flywheel.interfaces.jobs import (
    ExitCode,
    FailureReason,
    IngestArgs,
    IngestReport,
    JobFailure,
    write_result,
)

SNAPSHOT_FILES = ("data.parquet", "stats.json", "schema.json")


def ingest(
    spec: DatasetSpec,
    *,
    namespace: str,
    name: str,
    claim: str,
    store: ArtifactStore,
    previous_digest: str | None,
    max_bytes: int = IngestArgs.model_fields["max_bytes"].default,
) -> IngestReport:
    """Run the whole ingest in a staging directory beside the versions; its report. Raises
    DatasetError subclasses (and leaves nothing behind)."""
    started = time.perf_counter()
    versions = pvc_uri(claim, "datasets", namespace, name)
    store.sweep_staging(versions)  # one ingest Job at a time per Dataset: any left is stale
    staging = store.stage(versions)
    try:
        limits = Limits(
            max_bytes,
            spec.source.connect_timeout_seconds,
            spec.source.read_timeout_seconds,
        )
        source = open_source(spec.source, pvc_root=store.root, spool=staging, limits=limits)
        schema, kinds, rows = _typed_snapshot(source, spec, staging / "data.parquet")
        examined = examine(staging / "data.parquet", schema, kinds, spec)
        schema = examined.schema
        previous = _previous_schema(store, claim, namespace, name, previous_digest)
        failures = validate(examined.summaries, schema, spec, previous)
        if failures:
            raise ValidationFailed(failures)
        digest = examined.digest
        version_dir = pvc_uri(claim, "datasets", namespace, name, digest.removeprefix("sha256:"))
        identity = {
            "namespace": namespace,
            "name": name,
            "version": short_version(digest),
            "digest": digest,
        }
        stats = compute_stats(examined.stats, schema, rows=rows, identity=identity)
        _write_json(staging / "stats.json", stats)
        _write_json(staging / "schema.json", schema.to_json())
        created = store.publish_directory(staging, version_dir, SNAPSHOT_FILES)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return IngestReport(
        version=short_version(digest),
        digest=digest,
        rows=rows,
        columns=len(schema.columns),
        snapshot_uri=f"{version_dir}/data.parquet",
        stats_uri=f"{version_dir}/stats.json",
        changed=digest != previous_digest,
        published=created,
        seconds=round(time.perf_counter() - started, 3),
        source_bytes=source.size,
        peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )


def _typed_snapshot(
    source: LocalSource, spec: DatasetSpec, path: Path
) -> tuple[ResolvedSchema, dict[str, Kind], int]:
    """Write the snapshot of the label and the features, typed by every one of their values:
    in one pass when every batch agrees with the first, else in a second pass once the kinds are
    settled. A column that must hold numbers and does not fails validation."""
    names = source.names()
    label, features = used_columns(names, spec.data_schema)
    numeric = must_be_numbers(label, spec.data_schema)
    columns = [*features, label]
    typings = {c: ColumnTyping(c, must_be_number=c in numeric) for c in columns}
    written = write_as_typed(source.batches(columns), typings, path)
    kinds = {c: typings[c].kind for c in columns}
    schema = resolve_schema(names, kinds, spec.data_schema)
    failures = type_failures(typings, schema)
    if failures:
        raise ValidationFailed(failures)
    rows = typings[label].rows
    if written != kinds:
        text = [c for c in columns if kinds[c] == Kind.STRING]
        rows = write_snapshot(source.batches(columns, text=text), kinds, path)
    return schema, kinds, rows


def _write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document, indent=1))


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
            max_bytes=args.max_bytes,
        )
    except DatasetError as error:
        write_result(JobFailure(reason=error.reason, message=str(error)), args.termination_log)
        return ExitCode.RETRYABLE if error.retryable else ExitCode.NOT_RETRYABLE
    except Exception as error:  # a bug or the claim failing: say what, rather than nothing
        failure = f"the ingest failed: {type(error).__name__}: {error}"
        write_result(
            JobFailure(reason=FailureReason.NO_RESULT, message=failure), args.termination_log
        )
        raise
    write_result(report, args.termination_log)
    return ExitCode.SUCCESS


if __name__ == "__main__":
    sys.exit(main())
