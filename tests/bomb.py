"""The "billion laughs" YAML used by the loader-limit tests: ``levels`` anchors, each a list of ``width`` aliases
to the previous one (9 × 9 expands to 9⁹ ≈ 387 million strings from about 600 bytes)."""

from __future__ import annotations


def alias_bomb(name: str = "bomb", levels: int = 9, width: int = 9) -> str:
    lines = ["apiVersion: v1", "kind: ConfigMap", f"metadata: {{name: {name}}}", "data:",
             "  a0: &a0 [" + ",".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"
