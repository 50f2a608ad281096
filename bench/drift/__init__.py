"""Drift-detection benchmark (run.py): our drift statistics beside Evidently and NannyML.

A package so that its modules (drift.run, drift.streams, ...) do not clash with bench/serving's
top-level ones under mypy; the scripts put bench/ on sys.path and import `drift.*`.
"""
