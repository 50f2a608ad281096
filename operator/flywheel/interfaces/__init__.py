"""Typed interfaces across process boundaries: the protocol between the operator and its Jobs
(:mod:`.jobs`). The names shared with the model server live in :mod:`flywheel_serving.names`,
a standard-library module both sides import."""
