"""Running in a Kubernetes pod: the pod is the node.

The workload's manifest passes the pod's name, namespace and node through the downward API; the kubelet
sets KUBERNETES_SERVICE_HOST in every container. In a pod the node id is the pod's name, and the drain
signal is the kubelet's SIGTERM (after the preStop hook, within terminationGracePeriodSeconds): the
cluster handles the machine's end (a spot notice, a scale-in) by evicting the pod, so no cloud metadata
watcher runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from fleet_agent import constants as c


@dataclass(frozen=True)
class KubernetesPod:
    name: str
    namespace: str
    node: str  # the Kubernetes node (machine) the pod runs on

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def detect(environ: Mapping[str, str] | None = None) -> KubernetesPod | None:
    """The pod this process runs in, or None outside Kubernetes (or without the downward API's name)."""
    environ = os.environ if environ is None else environ
    name = environ.get(c.K8S_POD_NAME_ENV, "").strip()
    if not name or not environ.get(c.K8S_SERVICE_HOST_ENV, "").strip():
        return None
    return KubernetesPod(
        name=name,
        namespace=environ.get(c.K8S_POD_NAMESPACE_ENV, "").strip(),
        node=environ.get(c.K8S_NODE_NAME_ENV, "").strip(),
    )
