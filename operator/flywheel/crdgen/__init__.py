"""CRD generation: the pydantic API models rendered as CustomResourceDefinitions.

`make manifests` runs `python -m flywheel.crdgen`; a unit test fails when `crds/` differs from
what the models generate.
"""
