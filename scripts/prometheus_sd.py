"""Pod discovery for the local stack's Prometheus: watches the pods on the real node and writes a file_sd target list.

Started and stopped by scripts/prometheus.sh next to Prometheus (Debian's prometheus is built without
kubernetes_sd_configs, so discovery is this small list+watch). Keeps every Running pod on real-0 that has an IP
and the annotation ``prometheus.io/scrape: "true"``; the target is ``<podIP>:<prometheus.io/port or the first
declared container port>``, the path ``prometheus.io/path`` (default /metrics). Labels: ``namespace``, ``pod`` and
every pod label, with the name sanitised as Prometheus' labelmap does (pod-template-hash → pod_template_hash).
The file is replaced atomically only when it changes; Prometheus reloads it on inotify (and every 2 s).

    python scripts/prometheus_sd.py KUBECONFIG OUT.json [NODE]
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Any

from kubernetes import client, config, watch

NODE = "real-0"


def target(pod: Any, node: str) -> dict[str, Any] | None:
    md, spec, st = pod.metadata, pod.spec, pod.status
    ann = md.annotations or {}
    if spec.node_name != node or st.phase != "Running" or not st.pod_ip or ann.get("prometheus.io/scrape") != "true":
        return None
    port = ann.get("prometheus.io/port")
    if not port:
        ports = [p.container_port for c in spec.containers for p in (c.ports or [])]
        if not ports:
            return None
        port = str(ports[0])
    labels = {re.sub(r"[^A-Za-z0-9_]", "_", k): v for k, v in (md.labels or {}).items()}
    labels.update(namespace=md.namespace, pod=md.name, __metrics_path__=ann.get("prometheus.io/path", "/metrics"))
    return {"targets": [f"{st.pod_ip}:{port}"], "labels": labels}


def write(path: str, pods: dict[str, dict[str, Any]], last: list[str]) -> None:
    text = json.dumps([pods[k] for k in sorted(pods)], indent=1, sort_keys=True)
    if last and last[0] == text:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # atomic: Prometheus never reads half a file
    last[:] = [text]
    print(f"{time.strftime('%H:%M:%S')} {len(pods)} targets", flush=True)


def main() -> None:
    kubeconfig, out = sys.argv[1], sys.argv[2]
    node = sys.argv[3] if len(sys.argv) > 3 else NODE
    last: list[str] = []
    while True:
        try:
            config.load_kube_config(config_file=kubeconfig)
            core = client.CoreV1Api()
            sel = f"spec.nodeName={node}"
            listed = core.list_pod_for_all_namespaces(field_selector=sel)
            pods = {f"{p.metadata.namespace}/{p.metadata.name}": t for p in listed.items if (t := target(p, node))}
            write(out, pods, last)
            rv = listed.metadata.resource_version
            # The watch ends after its timeout, or when the apiserver goes away: list again (deletions included).
            for ev in watch.Watch().stream(core.list_pod_for_all_namespaces, field_selector=sel,
                                           resource_version=rv, timeout_seconds=120):
                p = ev["object"]
                key = f"{p.metadata.namespace}/{p.metadata.name}"
                t = target(p, node) if ev["type"] != "DELETED" else None
                if t:
                    pods[key] = t
                else:
                    pods.pop(key, None)
                write(out, pods, last)
        except Exception as e:  # apiserver restarting, 410 Gone: relist after a short pause
            print(f"{time.strftime('%H:%M:%S')} watch interrupted ({type(e).__name__}: {str(e)[:200]}); relisting",
                  flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main()
