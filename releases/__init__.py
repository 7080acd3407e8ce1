"""Reading releases: the bounded YAML loader, manifest validation and rendering, and release bundles.

Above ``contract``, below ``activities`` and ``orchestrator``: the CLI validates and packs with it, the worker's
activities fetch bundles and load manifests with it. Imports only ``contract`` (tests/test_import_graph.py).
"""
