"""`kubernetes` refused at config time with one line each: clusters the program could not reach or route
to, models the store does not hold, names the gateway could not tell apart, versions it has no schema for."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from components.stack import parse_stack_config

MODEL = {"name": "llama-8b-k8s", "model": "meta-llama/Llama-3.1-8B-Instruct"}
CLUSTER: dict[str, Any] = {
    "name": "gpu-east",
    "region": "us-east-1",
    "eks": {"clusterName": "ml-gpu"},
    "kubernetesVersion": "1.33",
    "loadBalancerSubnets": ["subnet-0a1b2c3d4e5f60718"],
    "models": [MODEL],
}


def cluster(**changes: Any) -> dict[str, Any]:
    return {"kubernetes": {"clusters": [{**CLUSTER, **changes}]}}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            cluster(kubernetesVersion="1.24"),
            "inference-fleet:kubernetes.clusters[0].kubernetesVersion: got '1.24'; the cluster's Kubernetes minor "
            "version, one of: 1.29, 1.30, 1.31, 1.32, 1.33, 1.34, 1.35, 1.36, 1.37",
        ),
        (
            cluster(region="eu-west-1"),
            "inference-fleet:kubernetes.clusters[0].region: the pods mount the model store of eu-west-1, which is "
            "not a control-plane region; the store is declared in: us-east-1 (set storeRegion to one of them)",
        ),
        (
            cluster(gatewayRegions=["us-west-2"]),
            "inference-fleet:kubernetes.clusters[0].gatewayRegions[0]: got 'us-west-2'; gateways run in: us-east-1",
        ),
        (
            cluster(eks=None),
            "inference-fleet:kubernetes.clusters[0].eks: not set, so the API is reached with a kubeconfig, and ESC "
            "holds none for this cluster: set eks.clusterName, or the secret kubernetesKubeconfigs.gpu-east",
        ),
        (
            cluster(loadBalancerSubnets=["sub-123"]),
            "inference-fleet:kubernetes.clusters[0].loadBalancerSubnets[0]: got 'sub-123'; expected a subnet id "
            "such as subnet-0a1b2c3d4e5f67890",
        ),
        (
            cluster(namespace="Fleet_Prod"),
            "inference-fleet:kubernetes.clusters[0].namespace: got 'Fleet_Prod'; a namespace is a DNS label: at "
            "most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
        ),
        (
            cluster(models=[{**MODEL, "minReplicas": 3, "maxReplicas": 2}]),
            "inference-fleet:kubernetes.clusters[0].models[0].minReplicas: got 3; at most maxReplicas (2)",
        ),
        (
            cluster(models=[{**MODEL, "engineArgs": ["--port=9000"]}]),
            "inference-fleet:kubernetes.clusters[0].models[0].engineArgs[0]: got '--port'; the pod's agent sets "
            "--host, --port, --served-model-name, --tensor-parallel-size",
        ),
        (
            cluster(models=[{**MODEL, "engine": "llamacpp"}]),
            "inference-fleet:kubernetes.clusters[0].models[0].engine: got 'llamacpp'; llama.cpp publishes no...",
        ),
        (
            cluster(models=[{**MODEL, "gpus": 16}]),
            "inference-fleet:kubernetes.clusters[0].models[0].gpus: got 16; input should be less than or equal to 8",
        ),
        (
            cluster(models=[{**MODEL, "model": "Qwen/Qwen2.5-0.5B-Instruct"}]),
            "inference-fleet:kubernetes.clusters[0].models[0].model: got 'Qwen/Qwen2.5-0.5B-Instruct', which "
            "modelStore.models does not list; the store holds: meta-llama/Llama-3.1-8B-Instruct (add it there, "
            "and load it with `fleet models sync`)",
        ),
        (
            {
                "kubernetes": {
                    "clusters": [
                        CLUSTER,
                        {**CLUSTER, "name": "gpu-east-2", "eks": {"clusterName": "ml-gpu-2"}},
                    ]
                }
            },
            "inference-fleet:kubernetes.clusters[1].models[0].name: got 'llama-8b-k8s', also served on cluster "
            "'gpu-east'; backend names are unique",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_bad_cluster_gets_one_line_naming_the_key(config_problems, changes, expected):
    problems = config_problems("k8s-example", changes)
    assert len(problems) == 1, problems
    if expected.endswith("..."):
        assert problems[0].startswith(expected.removesuffix("...")), problems[0]
    else:
        assert problems[0] == expected


def test_prod_serves_every_model_from_two_pods_at_least(config_problems, stack_input):
    """One disruption at a time (the budget) must never take a prod model offline: prod's default is 2, and
    fewer is refused."""
    stack = stack_input("prod", cluster())
    config = parse_stack_config(stack.config, set(stack.secret_keys))
    assert config.kubernetes.clusters[0].models[0].min_replicas == 2
    problems = config_problems("prod", cluster(models=[{**MODEL, "minReplicas": 1}]))
    assert problems == [
        "inference-fleet:kubernetes.clusters[0].models[0].minReplicas: got 1; prod runs at least 2, so a node "
        "drain (one disruption at a time) never takes the model offline"
    ]


def test_routes_name_kubernetes_models_as_backends_and_refuse_unknown_ones(config_problems):
    routes = {
        "routes": [{"model": "llama-3.1-8b", "pools": ["llama-8b-k8s", "llama-8b-nowhere"]}],
    }
    problems = config_problems("k8s-example", {"controlPlane": {"gateway": routes}})
    assert problems == [
        "inference-fleet:controlPlane.gateway.routes[0].pools[1]: got 'llama-8b-nowhere'; declared gpuPools: "
        "(none); Kubernetes models: llama-8b-k8s"
    ]


def test_a_model_named_like_a_gpu_pool_is_refused(config_problems):
    pool = {
        "name": "llama-8b-k8s",
        "region": "us-east-1",
        "engine": "vllm",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "instanceTypes": ["g6.2xlarge"],
        "maxSize": 1,
    }
    problems = config_problems("k8s-example", {"gpuPools": [pool]})
    assert problems == [
        "inference-fleet:kubernetes.clusters[0].models[0].name: got 'llama-8b-k8s', also a GPU pool's name; names "
        "are unique"
    ]


def test_a_cluster_without_eks_takes_its_kubeconfig_from_esc(stack_input):
    given = stack_input("k8s-example", {**cluster(eks=None), "kubernetesKubeconfigs": KUBECONFIGS})
    given = replace(given, secret_keys=given.secret_keys | {"inference-fleet:kubernetesKubeconfigs"})
    config = parse_stack_config(given.config, set(given.secret_keys))
    assert config.kubernetes.clusters[0].eks is None


KUBECONFIGS = {"gpu-east": "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n"}


def test_a_kubeconfig_given_in_plain_text_is_refused(config_problems):
    problems = config_problems("k8s-example", {**cluster(eks=None), "kubernetesKubeconfigs": KUBECONFIGS})
    assert problems[0].startswith(
        "inference-fleet:kubernetesKubeconfigs: given in plain text; it is a secret (object cluster name -> "
        "kubeconfig, for clusters reached without EKS)"
    )


def test_the_dev_stack_serves_nothing_on_kubernetes(render):
    rendering = render("dev")
    assert not [r for r in rendering.resources if r.type.startswith(("kubernetes:", "pulumi:providers:kube"))]
    assert "kubernetes" not in rendering.outputs
