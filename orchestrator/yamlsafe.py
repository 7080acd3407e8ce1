"""Bounded YAML parsing: every spec and manifest file goes through here, so no input can exhaust the worker.

Called by ``orchestrator.loader`` (CLI, Python client, and the worker's ``prepare_release``/``snapshot_release``,
which re-read the manifests). PyYAML's ``safe_load`` shares the objects an alias points to, so a "billion laughs"
document loads in microseconds; the explosion comes later, when anything walks or serializes the tree (the
manifest digest, rendering, JSON for the API). Here the expansion is measured on the node graph *before* any
object is constructed, and a document over the bounds is refused as invalid input, naming the line.

The bounds, and why (documented in README "Limits"):

- ``MAX_ALIASES`` aliases per document. Kubernetes manifests rarely use them (kubectl and the apiserver refuse
  documents with excessive aliasing too, via go-yaml's alias ratio check).
- ``MAX_NODES`` YAML nodes per document *after* alias expansion.
- ``MAX_DOCUMENT_BYTES`` of scalar text per document after expansion: the kube-apiserver refuses request bodies
  over 3 MiB, so a bigger object could never be applied.
- ``MAX_FILE_BYTES`` per file and ``MAX_RELEASE_BYTES`` for all manifest files of a release together (checked by
  the loader from the file sizes, before a file is read).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_ALIASES = 100
MAX_NODES = 200_000
MAX_DOCUMENT_BYTES = 3 * 1024 * 1024
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_RELEASE_BYTES = 8 * 1024 * 1024
MAX_SPEC_BYTES = 1024 * 1024
MAX_DEPTH = 200


class YamlLimitError(yaml.YAMLError):
    """A document over one of the bounds. ``document`` is 1-based, ``line`` 1-based or None."""

    def __init__(self, reason: str, document: int, line: int | None) -> None:
        self.reason, self.document, self.line = reason, document, line
        super().__init__(reason + (f" (line {line})" if line else ""))


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.document = 0
        self._aliases = 0
        self._nodes = 0

    def compose_document(self) -> Node | None:
        self.document += 1
        self._aliases = self._nodes = 0
        node: Node | None = super().compose_document()  # type: ignore[no-untyped-call]
        if node is not None:
            _check_expansion(node, self.document)
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._nodes += 1
        if self.check_event(yaml.AliasEvent):  # type: ignore[no-untyped-call]
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlLimitError(f"more than {MAX_ALIASES} YAML aliases in one document (alias expansion is "
                                     f"bounded; see README, Limits)", self.document, mark.line + 1)
        if self._nodes > MAX_NODES:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise YamlLimitError(f"more than {MAX_NODES} YAML nodes in one document", self.document, mark.line + 1)
        node: Node | None = super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        return node


def _check_expansion(root: Node, document: int) -> None:
    """Counts nodes and scalar bytes as if every alias were copied out, memoized per shared node (linear in the
    size of the graph, whatever the expansion). Recursive aliases and absurd nesting are refused as well."""
    memo: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def size(n: Node, depth: int) -> tuple[int, int]:
        key = id(n)
        if key in memo:
            return memo[key]
        if key in active:
            raise YamlLimitError("recursive YAML alias (a node contains itself)", document, n.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"YAML nested deeper than {MAX_DEPTH} levels", document, n.start_mark.line + 1)
        active.add(key)
        nodes, text = 1, 0
        if isinstance(n, ScalarNode):
            text = len(n.value)
        elif isinstance(n, SequenceNode):
            for c in n.value:
                a, b = size(c, depth + 1)
                nodes, text = nodes + a, text + b
        elif isinstance(n, MappingNode):
            for k, v in n.value:
                for c in (k, v):
                    a, b = size(c, depth + 1)
                    nodes, text = nodes + a, text + b
        active.discard(key)
        if nodes > MAX_NODES:
            raise YamlLimitError(f"YAML aliases expand to more than {MAX_NODES} nodes (alias expansion is bounded; "
                                 f"see README, Limits)", document, n.start_mark.line + 1)
        if text > MAX_DOCUMENT_BYTES:
            raise YamlLimitError(f"document expands to more than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB, the "
                                 f"kube-apiserver's request limit", document, n.start_mark.line + 1)
        memo[key] = (nodes, text)
        return nodes, text

    size(root, 0)


def load_all(text: str) -> list[Any]:
    """Every document of ``text`` (None for an empty one). Raises ``YamlLimitError`` or ``yaml.YAMLError``."""
    loader = _BoundedLoader(text)
    try:
        docs = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())  # type: ignore[no-untyped-call]
        return docs
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def load_one(text: str) -> Any:
    """A single-document file (the release spec)."""
    docs = load_all(text)
    if len(docs) > 1:
        raise YamlLimitError("expected one YAML document, found several", 2, None)
    return docs[0] if docs else None
