"""A small, safe subset of Kubernetes-style JSONPath for web analysis metrics (Argo's ``jsonPath``).

Called by ``activities.analysis`` (reduces a web metric's JSON answer to ``result``) and by release validation
(``releases.analysis_checks``: a path that does not parse is refused before anything happens). Supported:
``{$.data.ok}``, ``$.data.ok``, ``{.data.ok}``, ``$.items[0].value``, ``$['key with spaces']``, ``$.items[*].v``
(a list) and ``{$}`` (the whole document). No filters, no scripts, no recursive descent.
"""

from __future__ import annotations

import re
from typing import Any

_SEGMENT = re.compile(r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|\[(?P<index>-?\d+)\]|\[(?P<star>\*)\]|\.(?P<dotstar>\*)"""
                      r"""|\[(?P<q>['"])(?P<qname>(?:(?!(?P=q)).){1,200})(?P=q)\]""")
Segment = tuple[str, Any]  # ("key", name) | ("index", n) | ("star", None)


class JsonPathError(ValueError):
    pass


def parse(path: str) -> list[Segment]:
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1].strip()
    if p.startswith("$"):
        p = p[1:]
    segments: list[Segment] = []
    pos = 0
    while pos < len(p):
        m = _SEGMENT.match(p, pos)
        if not m:
            raise JsonPathError(f"unsupported JSONPath {path!r} at {p[pos:pos + 20]!r} (supported: .name, "
                                "['name'], [N], [*], e.g. {$.data.ok})")
        if m.group("name") or m.group("qname"):
            segments.append(("key", m.group("name") or m.group("qname")))
        elif m.group("index") is not None:
            segments.append(("index", int(m.group("index"))))
        else:
            segments.append(("star", None))
        pos = m.end()
    return segments


def select(path: str, doc: Any) -> Any:
    """The value at ``path`` in ``doc``; JsonPathError when it is missing."""
    values, many = [doc], False
    for kind, arg in parse(path):
        nxt = []
        for v in values:
            if kind == "key":
                if not isinstance(v, dict) or arg not in v:
                    raise JsonPathError(f"{path}: no key {arg!r}")
                nxt.append(v[arg])
            elif kind == "index":
                if not isinstance(v, list) or not -len(v) <= arg < len(v):
                    raise JsonPathError(f"{path}: no index {arg}")
                nxt.append(v[arg])
            else:
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
                else:
                    raise JsonPathError(f"{path}: [*] on a scalar")
                many = True
        values = nxt
    return values if many else values[0]
