"""In a Kubernetes pod the pod is the node: its name (downward API) is the node id, and the kubelet's
SIGTERM is the drain signal, with no cloud metadata watcher. Checked against the real agent process serving
real llama.cpp, in the environment a pod gives it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from fleet_agent import constants as c
from fleet_agent.config import AgentConfig, EngineConfig, PreemptionConfig, load_config
from fleet_agent.kubernetes import KubernetesPod, detect
from fleet_agent.preemption import AwsImdsWatcher, make_watcher

from .agent_testkit.fake_metadata import FakeImds
from .agent_testkit.harness import (
    STREAM_TOKENS,
    StreamInThread,
    generated_tokens,
    llama_config,
    spot_notice,
    write_config,
)
from .agent_testkit.net import serving, wait_for

POD = "llama-8b-k8s-7d9f8b6c5-x2x4q"
POD_ENV = {
    c.K8S_SERVICE_HOST_ENV: "10.100.0.1",  # the kubelet sets it in every container
    c.K8S_POD_NAME_ENV: POD,  # the manifest's downward API
    c.K8S_POD_NAMESPACE_ENV: "fleet-prod",
    c.K8S_NODE_NAME_ENV: "ip-10-40-3-17.ec2.internal",
}


def test_the_pod_is_detected_from_the_kubelets_and_the_downward_apis_environment() -> None:
    assert detect(POD_ENV) == KubernetesPod(POD, "fleet-prod", "ip-10-40-3-17.ec2.internal")
    assert detect({}) is None
    assert detect({c.K8S_POD_NAME_ENV: POD}) is None  # a name, but not in a pod
    assert detect({c.K8S_SERVICE_HOST_ENV: "10.100.0.1"}) is None  # a pod whose manifest gives no name


def test_in_a_pod_the_node_id_is_the_pods_name_unless_config_names_one(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[engine]\nkind = "vllm"\nmodels = ["m"]\n')
    assert load_config(path, POD_ENV, load_keys=False).node.id == POD
    path.write_text('[node]\nid = "given"\n[engine]\nkind = "vllm"\nmodels = ["m"]\n')
    assert load_config(path, POD_ENV, load_keys=False).node.id == "given"


def test_in_a_pod_no_cloud_metadata_watcher_runs() -> None:
    config = AgentConfig(
        engine=EngineConfig(kind="vllm", models=["m"]), preemption=PreemptionConfig(provider="aws")
    )

    async def watchers() -> tuple[object, object]:
        async with httpx.AsyncClient() as client:
            return make_watcher(config, client, in_pod=True), make_watcher(config, client)

    in_pod, on_a_vm = asyncio.run(watchers())
    assert in_pod is None
    assert isinstance(on_a_vm, AwsImdsWatcher)


def test_in_a_pod_the_kubelets_sigterm_drains_and_the_nodes_metadata_is_not_watched(
    tmp_path: Path, tiny_model: Path
) -> None:
    """The node's IMDS says the spot instance is going: a pod leaves that to the cluster (which evicts it)
    and drains on the kubelet's SIGTERM, finishing the stream in flight, then exits 0."""
    imds = FakeImds()
    imds.spot_action = spot_notice(120)
    with serving(imds) as metadata:
        config = llama_config(
            tiny_model,
            preemption={"provider": "aws", "aws_imds_url": metadata.url, "aws_poll_s": 0.2},
        )
        del config["node"]["id"]  # the pod's name gives it
        path = write_config(tmp_path, config)
        port = int(path.read_text().split("port = ")[-1].split()[0])
        url = f"http://127.0.0.1:{port}"
        log_path = tmp_path / "agent.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "fleet_agent.main", "run", "--config", str(path)],
                stderr=log,
                stdout=log,
                env={**os.environ, **POD_ENV},
            )
        try:
            wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, 120, "the agent to be ready")
            status = httpx.get(url + "/status").json()
            assert status["node"]["id"] == POD
            assert status["node"]["kubernetes"] == {
                "name": POD,
                "namespace": "fleet-prod",
                "node": "ip-10-40-3-17.ec2.internal",
            }
            stream = StreamInThread(url).start()
            process.send_signal(signal.SIGTERM)
            wait_for(lambda: httpx.get(url + "/readyz").status_code == 503, 30, "readiness off after SIGTERM")
            stream.join()
            assert generated_tokens(stream.text) == STREAM_TOKENS
            assert process.wait(120) == 0
        finally:
            if process.poll() is None:
                process.kill()
    # Ready with a spot notice posted all along: nothing asked the node's metadata service.
    assert imds.token_requests == 0 and imds.unauthorized == 0
    log_text = log_path.read_text()
    assert f"in Kubernetes pod fleet-prod/{POD} on node ip-10-40-3-17.ec2.internal" in log_text
    assert "preemption.provider=aws ignored in a Kubernetes pod" in log_text
    assert "readiness off (signal: SIGTERM)" in log_text
    assert "Traceback" not in log_text
