"""Dataset processing for the ingest Job: read, resolve the schema, validate, snapshot, profile.

Pure data code (pandas, numpy, pyarrow): nothing here imports kopf or a Kubernetes client. The
ingest entrypoint (:mod:`flywheel.jobs.ingest`) strings the steps together.
"""
