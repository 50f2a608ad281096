"""The controller machinery every kind shares: the watch cache (:mod:`.store`), the work queue
(:mod:`.queue`), objects parsed once (:mod:`.target`), the controller contract
(:mod:`.controller`), the one reconcile loop (:mod:`.reconciler`) and the one way outcomes are
written (:mod:`.act`). Nothing here imports kopf: :mod:`flywheel.wiring` connects it to kopf's
watches.
"""
