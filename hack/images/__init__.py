"""Flywheel's images without Docker: a Debian base from Debian's packages (mmdebstrap), both
Dockerfiles built unchanged with buildah, each image unpacked into a root file system plus its
OCI config, cached by content under the reference the chart and the operator use.

`python -m images build` (`make images-local`) builds; `images.store.lookup(ref)` is what a
runtime reads. Modules: `recipes` (what), `digest` (content digests), `base` (the base image),
`buildah` (the builder), `build` (orchestration, progress), `store` (the on-disk index),
`tools` (the Debian packages needed).
"""
