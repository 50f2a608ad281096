"""One package per kind, each the same three parts: `gather` (every read a decision needs),
a pure `decide(inputs, now) -> Outcome` over one typed inputs object, and the builders its
outcome uses (`render`); the writes are the shared :mod:`flywheel.runtime.act`. The packages do
not import each other (enforced): controllers cooperate only through status, read through
:mod:`flywheel.core.statuses`.
"""
