"""The Flywheel story, shared by `make demo` (narrated) and tests/e2e (asserted): synthetic
customer data served over HTTP, the quick-start objects, traffic, a shift, retraining."""
