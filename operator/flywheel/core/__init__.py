"""Pure building blocks that every controller shares: object accessors, conditions, times,
policy chains, the :class:`~flywheel.core.outcome.Outcome` of a decision, and pod specs.

Nothing here does I/O or reads the clock; callers pass `now`.
"""
