"""Kubernetes manifests (deploy/k8s) are well-formed and agree with memstream's own settings, without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from memstream.agents.settings import KafkaSettings, Settings, WorkerSettings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
K8S_VERSION = "1.33"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]


def _all() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) for doc in _docs(path.name)]


def _one(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in _all() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _worker() -> dict[str, Any]:
    return _one("Deployment")["spec"]["template"]["spec"]["containers"][0]


KAFKA, WORKER = KafkaSettings(), WorkerSettings()
"""memstream's defaults (the models themselves: no environment variable of the test run leaks in)."""


def test_every_manifest_has_api_version_kind_and_name():
    docs = _all()
    assert {name for name, _ in docs} >= {
        "configmap.yaml",
        "deployment.yaml",
        "secret.example.yaml",
        "keda-scaledobject.yaml",
        "kustomization.yaml",
    }
    for name, doc in docs:
        assert doc.get("apiVersion") == "v1" or "/" in str(doc.get("apiVersion")), name
        assert isinstance(doc.get("kind"), str), name
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], name


def test_kustomization_lists_the_manifests_but_not_the_secret_example():
    resources = _one("Kustomization")["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in resources  # users create their own Secret
    assert set(resources) == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}


def test_configmap_is_valid_memstream_settings(monkeypatch):
    data = _one("ConfigMap")["data"]
    assert all(key.startswith("MEMSTREAM_") and isinstance(value, str) for key, value in data.items())
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # every key must be a real setting with a valid value
    assert settings.store.backend == "server"  # several replicas: the edge store allows one process only
    assert settings.worker.web_host == "0.0.0.0"
    assert settings.worker.app_id == WORKER.app_id
    assert settings.topics.interactions == KAFKA.topics.interactions
    assert settings.kafka.partitions == KAFKA.partitions
    for key in data:  # pydantic-settings ignores unknown variables (extra="ignore"): check names ourselves
        group, _, field = key.removeprefix("MEMSTREAM_").lower().partition("__")
        assert field in type(getattr(settings, group)).model_fields, key


def test_deployment_container_is_well_formed():
    deployment = _one("Deployment")
    spec = deployment["spec"]
    template = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    worker = _worker()
    assert worker["image"] == "memstream:latest"
    assert worker["command"] == ["memstream", "worker"]
    web_port = WORKER.web_port
    ports = {p["name"]: p for p in worker["ports"]}
    assert ports["http"]["containerPort"] == web_port and ports["http"].get("protocol", "TCP") == "TCP"
    for probe in ("readinessProbe", "livenessProbe"):
        get = worker[probe]["httpGet"]
        assert get["path"] == "/healthz/"
        assert get["port"] in ports or get["port"] == web_port
    assert worker["resources"]["requests"]["memory"] and worker["resources"]["limits"]["memory"]

    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(web_port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_deployment_env_comes_from_the_configmap_and_secret():
    worker = _worker()
    configmap = _one("ConfigMap")["metadata"]["name"]
    secret = _one("Secret")
    assert [s["configMapRef"]["name"] for s in worker["envFrom"]] == [configmap]
    env = {e["name"]: e for e in worker["env"]}
    for name in ("MEMSTREAM_KAFKA__SASL_PASSWORD", "MEMSTREAM_STORE__API_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    for item in worker["env"]:
        assert item["name"].startswith("MEMSTREAM_") and ("value" in item) != ("valueFrom" in item)


def test_state_dir_is_a_mounted_volume():
    pod = _one("Deployment")["spec"]["template"]["spec"]
    state_dir = _one("ConfigMap")["data"]["MEMSTREAM_WORKER__STATE_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in _worker()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert state_dir in mounts and mounts[state_dir] in volumes
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_service_selects_the_workers():
    service = _one("Service")
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in _worker()["ports"]}


def test_keda_scales_the_deployment_on_interaction_lag():
    scaled = _one("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target["name"] == _one("Deployment")["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] == 1
    partitions = int(_one("ConfigMap")["data"]["MEMSTREAM_KAFKA__PARTITIONS"])
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["topic"] == KAFKA.topics.interactions  # memstream.interactions
    assert meta["consumerGroup"] == WORKER.app_id
    assert meta["bootstrapServers"] == _one("ConfigMap")["data"]["MEMSTREAM_KAFKA__BOOTSTRAP"]
    assert int(meta["lagThreshold"]) > 0
    assert all(isinstance(v, str) for v in meta.values())  # KEDA metadata is a map of strings

    auth = _one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret = _one("Secret")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        assert ref["parameter"] in {"sasl", "username", "password", "tls", "ca", "cert", "key"}


def _policies() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc["spec"] for _, doc in _all() if doc["kind"] == "NetworkPolicy"}


def test_network_policies_are_in_the_kustomization():
    resources = _one("Kustomization")["resources"]
    files = {name for name, doc in _all() if doc["kind"] == "NetworkPolicy"}
    assert files and files <= set(resources)
    assert set(_policies()) == {"memstream-worker-api", "qdrant-from-memstream-workers"}


def test_worker_api_is_reachable_only_from_labelled_clients_on_its_port():
    workers = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    spec = _policies()["memstream-worker-api"]
    assert spec["podSelector"]["matchLabels"].items() <= workers.items()
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": WORKER.web_port, "protocol": "TCP"}]
    sources = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert {"memstream.io/api-client": "true"} in sources
    for peer in rule["from"]:  # every source names pods by label: no ipBlock, no whole namespace
        assert set(peer) <= {"podSelector", "namespaceSelector"} and peer["podSelector"]["matchLabels"]
    assert all(labels == {"memstream.io/api-client": "true"} or labels.items() <= workers.items() for labels in sources)


def test_qdrant_is_reachable_only_from_the_workers():
    workers = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    spec = _policies()["qdrant-from-memstream-workers"]
    assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "qdrant"}
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"].items() <= workers.items()
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    url_port = int(_one("ConfigMap")["data"]["MEMSTREAM_STORE__URL"].rsplit(":", 1)[1])
    assert url_port in {p["port"] for p in rule["ports"]}


def test_keys_come_from_the_secret_with_no_working_default():
    env = {e["name"]: e for e in _worker()["env"]}
    secret = _one("Secret")
    for name, key in (("MEMSTREAM_STORE__API_KEY", "qdrant-api-key"), ("MEMSTREAM_AUTH__ADMIN_KEY", "api-key")):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == key and ref["optional"] is False  # no Secret key, no pod
        assert secret["stringData"][key] == ""  # the example holds no usable key
    assert "change-me" not in (K8S / "secret.example.yaml").read_text()
    for _, doc in _all():  # authentication of the HTTP API stays on (MEMSTREAM_AUTH__MODE unset)
        assert "MEMSTREAM_AUTH__MODE" not in yaml.safe_dump(doc)


@pytest.mark.parametrize("kind", ["ConfigMap", "Deployment", "Service", "Secret"])
def test_core_manifests_match_the_kubernetes_schema(kind):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")  # bundles the schemas: no network
    kubernetes_validate.validate(_one(kind), K8S_VERSION, strict=True)


def test_network_policies_match_the_kubernetes_schema():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for _, doc in _all():
        if doc["kind"] == "NetworkPolicy":
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
