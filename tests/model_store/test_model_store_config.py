"""`modelStore` refused at config time with one line each, and pools and jobs held to the models the store
holds (the node checks the store's manifest of them)."""

from __future__ import annotations

import pytest

from components.model_store import ModelStoreConfig

STORE = {
    "models": [
        {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        {"name": "qwen2.5:14b", "path": "ollama/qwen2.5-14b"},
    ],
    "metadata": {"replicas": 1},
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"modelStore": {**STORE, "metadata": {"replicas": 0}}},
            "inference-fleet:modelStore.metadata.replicas: got 0; prod keeps at least 1 replica in another zone "
            "(Multi-AZ): losing the metadata Redis loses the volume",
        ),
        (
            {"modelStore": {**STORE, "metadata": {"replicas": 1, "snapshotRetentionDays": 0}}},
            "inference-fleet:modelStore.metadata.snapshotRetentionDays: got 0; prod keeps daily snapshots of the "
            "volume's metadata",
        ),
        (
            {"modelStore": {**STORE, "blockSizeMib": 3}},
            "inference-fleet:modelStore.blockSizeMib: got 3; JuiceFS takes: 1, 2, 4, 8, 16",
        ),
        (
            {"modelStore": {**STORE, "models": [*STORE["models"], {"name": "qwen2.5:14b"}]}},
            "inference-fleet:modelStore.models[2].name: got 'qwen2.5:14b' twice; each is named once",
        ),
        (
            {
                "modelStore": {
                    **STORE,
                    "models": [*STORE["models"], {"name": "other", "path": "ollama/qwen2.5-14b"}],
                }
            },
            "inference-fleet:modelStore.models[2]: other would share the directory ollama/qwen2.5-14b with "
            "qwen2.5:14b",
        ),
        (
            {"modelStore": {**STORE, "models": [*STORE["models"], {"name": "x", "path": "../etc"}]}},
            "inference-fleet:modelStore.models[2].path: got '../etc'; a directory in the volume is '/'-separated "
            "names of letters, digits, '.', '_' and '-' (not '.' or '..')",
        ),
        (
            {"modelStore": {**STORE, "models": [*STORE["models"], {"name": "x", "path": ".trash/x"}]}},
            "inference-fleet:modelStore.models[2].path: got '.trash/x'; names starting with '.' at the volume's "
            "top are JuiceFS's own",
        ),
        (
            {"modelStore": {**STORE, "models": [*STORE["models"], {"name": "org/model@v2"}]}},
            "inference-fleet:modelStore.models[2].name: got 'org/model@v2'; a directory in the volume is "
            "'/'-separated names of letters, digits, '.', '_' and '-' (not '.' or '..'); give models[2].path",
        ),
        (
            {"modelStore": {**STORE, "metadata": {"replicas": 1, "nodeType": "cache.m5.large"}}},
            "inference-fleet:modelStore.metadata.nodeType: got 'cache.m5.large'; allowed: cache.t4g.micro, "
            "cache.t4g.small, cache.t4g.medium, cache.m7g.large, cache.m7g.xlarge, cache.m7g.2xlarge, "
            "cache.r7g.large, cache.r7g.xlarge, cache.r7g.2xlarge",
        ),
    ],
    ids=[
        "prod-single-node",
        "prod-no-snapshots",
        "block-size",
        "model-twice",
        "shared-directory",
        "path-escapes",
        "hidden-top-level",
        "name-needs-a-path",
        "node-type",
    ],
)
def test_bad_model_store_gets_one_line(config_problems, changes, expected) -> None:
    assert config_problems("prod", changes) == [expected]


def test_pools_and_jobs_serve_only_models_the_store_holds(config_problems) -> None:
    missing = "which modelStore.models does not list; the store holds: qwen2.5:14b (add it there, and load it with `fleet models sync`)"
    assert config_problems("prod", {"modelStore": {**STORE, "models": STORE["models"][1:]}}) == [
        f"inference-fleet:gpuPools[0].model: got 'meta-llama/Llama-3.1-8B-Instruct', {missing}",
        f"inference-fleet:gpuPools[2].model: got 'meta-llama/Llama-3.1-8B-Instruct', {missing}",
        f"inference-fleet:batchJobs[0].model.source: got 'meta-llama/Llama-3.1-8B-Instruct', {missing}",
    ]


def test_dev_may_run_one_metadata_node_without_snapshots(stack_input) -> None:
    from components.stack import parse_stack_config

    dev_models = [{"name": "meta-llama/Llama-3.1-8B-Instruct"}, {"name": "Qwen/Qwen2.5-0.5B-Instruct"}]
    stack = stack_input(
        "dev", {"modelStore": {"models": dev_models, "metadata": {"snapshotRetentionDays": 0}}}
    )
    store = parse_stack_config(stack.config, set(stack.secret_keys)).model_store
    assert (store.metadata.replicas, store.metadata.snapshot_retention_days) == (0, 0)


def test_each_model_has_a_directory_in_the_volume() -> None:
    store = ModelStoreConfig.model_validate(STORE)
    assert store.model("meta-llama/Llama-3.1-8B-Instruct").directory == "meta-llama/Llama-3.1-8B-Instruct"
    assert store.model("qwen2.5:14b").directory == "ollama/qwen2.5-14b"
    assert ModelStoreConfig.model_validate({"models": [{"name": "qwen2.5:14b"}]}).model(
        "qwen2.5:14b"
    ).directory == ("qwen2.5/14b")
    with pytest.raises(KeyError):
        store.model("mistral:7b")
