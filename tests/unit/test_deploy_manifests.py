"""The deployment files keep their trust properties: only the gateway is reachable from outside, every service
gets the service token and must have one, secrets come from Secrets, and spools, keys and data dirs live on
persistent volumes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICES = {"log-ingest", "proxy-router", "dataset", "model-registry", "trainer", "inference", "criteria-judge",
            "eval", "gateway"}


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((REPO / "deploy/k8s/kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((REPO / "deploy/k8s" / resource).read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _of(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def test_every_service_is_a_statefulset_whose_data_dir_is_a_persistent_claim(k8s) -> None:
    sets = _of(k8s, "StatefulSet")
    assert set(sets) == SERVICES and not _of(k8s, "Deployment")
    for name, workload in sets.items():
        claims = {c["metadata"]["name"] for c in workload["spec"]["volumeClaimTemplates"]}
        mounts = {m["mountPath"]: m["name"] for m in _container(workload)["volumeMounts"]}
        assert mounts["/data"] in claims, name  # spools, keys, local state
        assert not workload["spec"]["template"]["spec"].get("volumes"), f"{name} has pod-lifetime volumes"
        assert workload["spec"]["serviceName"] in _of(k8s, "Service")


def test_every_service_reads_the_token_from_a_secret_and_must_have_one(k8s) -> None:
    secrets = _of(k8s, "Secret")
    assert "REFINERY_INTERNAL_TOKEN" in secrets["refinery-internal"]["stringData"]
    config = _of(k8s, "ConfigMap")["refinery"]["data"]
    assert config["REFINERY_INTERNAL_TOKEN_REQUIRED"] == "true"
    in_clear = [key for key in config if key != "REFINERY_INTERNAL_TOKEN_REQUIRED" and ("TOKEN" in key or "KEY" in key)]
    assert in_clear == []  # a ConfigMap is not a place for secrets
    for name, workload in _of(k8s, "StatefulSet").items():
        env_from = _container(workload)["envFrom"]
        assert {"secretRef": {"name": "refinery-internal"}} in env_from, name
        assert {"configMapRef": {"name": "refinery"}} in env_from, name


def test_the_gateway_alone_reads_the_admin_token_and_encryption_key_from_a_secret(k8s) -> None:
    assert set(_of(k8s, "Secret")["refinery-gateway"]["stringData"]) == {"REFINERY_ADMIN_TOKEN",
                                                                         "REFINERY_ENCRYPTION_KEY"}
    readers = {name for name, w in _of(k8s, "StatefulSet").items()
               if {"secretRef": {"name": "refinery-gateway"}} in _container(w)["envFrom"]}
    assert readers == {"gateway"}


def test_network_policies_admit_outsiders_to_the_gateway_http_port_only(k8s) -> None:
    policies = _of(k8s, "NetworkPolicy")
    labelled = {name for name, w in _of(k8s, "StatefulSet").items()
                if w["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/part-of") == "refinery"}
    assert labelled == SERVICES
    internal = policies["refinery-internal"]["spec"]
    assert internal["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "refinery"}}
    assert internal["policyTypes"] == ["Ingress"]
    assert internal["ingress"] == [{"from": [{"podSelector": {}}]}]  # this namespace's pods, nothing else
    public = [p["spec"] for p in policies.values() if any("from" not in rule for rule in p["spec"]["ingress"])]
    assert public == [{"podSelector": {"matchLabels": {"app": "gateway"}}, "policyTypes": ["Ingress"],
                       "ingress": [{"ports": [{"protocol": "TCP", "port": 8000}]}]}]


def test_compose_publishes_only_the_gateway_port(compose) -> None:
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"gateway": ["8000:8000"]}
    assert all("expose" not in s for s in compose["services"].values())


def test_compose_keeps_the_backend_on_an_internal_network(compose) -> None:
    assert compose["networks"]["backend"] == {"internal": True}
    for name, service in compose["services"].items():
        assert "backend" in service["networks"], name
    on_egress = {name for name, s in compose["services"].items() if "egress" in s["networks"]}
    assert on_egress == {"gateway", "proxy-router", "trainer", "inference"}


def test_compose_gives_every_service_the_token_from_the_environment(compose) -> None:
    env = compose["x-refinery-env"]
    assert env["REFINERY_INTERNAL_TOKEN"].startswith("${REFINERY_INTERNAL_TOKEN:?")  # unset: compose refuses
    assert env["REFINERY_INTERNAL_TOKEN_REQUIRED"] == "true"
    for name in SERVICES:
        assert compose["services"][name]["environment"]["REFINERY_INTERNAL_TOKEN"] == env["REFINERY_INTERNAL_TOKEN"]
    gateway = compose["services"]["gateway"]["environment"]
    assert gateway["REFINERY_ENCRYPTION_KEY"] == "${REFINERY_ENCRYPTION_KEY:-}"
    assert gateway["REFINERY_ADMIN_TOKEN"] == "${REFINERY_ADMIN_TOKEN:-}"


_ADDRESS = re.compile(r"^(?:https?://)?([a-z][a-z-]*):(\d+)/?$")


def test_compose_addresses_name_a_service_on_a_port_it_listens_on(compose) -> None:
    services = compose["services"]
    listens = {name: {str(v) for k, v in (s.get("environment") or {}).items() if k.endswith("_PORT")}
               for name, s in services.items()}
    seen = 0
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            match = _ADDRESS.match(str(value))
            if match is None:
                continue
            host, port = match.groups()
            assert host in services, (name, key, value)
            if host in SERVICES:
                assert port in listens[host], (name, key, value, listens[host])
                seen += 1
    assert seen >= len(SERVICES)


def test_the_k8s_addresses_name_a_service_port(k8s) -> None:
    ports = {name: {p["port"] for p in s["spec"]["ports"]} for name, s in _of(k8s, "Service").items()}
    config = _of(k8s, "ConfigMap")["refinery"]["data"]
    named = set()
    for key, value in config.items():
        match = _ADDRESS.match(str(value))
        if match is not None and match.group(1) in SERVICES:
            assert int(match.group(2)) in ports[match.group(1)], (key, value)
            named.add(match.group(1))
    assert named == SERVICES - {"trainer"}  # the trainer is reached through the bus only


def test_compose_keeps_every_service_data_dir_on_a_named_volume(compose) -> None:
    for name in SERVICES:
        volumes = dict(v.split(":")[::-1] for v in compose["services"][name]["volumes"])
        assert volumes["/data"] in compose["volumes"], name


def test_the_env_example_names_every_secret_compose_reads() -> None:
    example = (REPO / "deploy/docker/secrets.env.example").read_text()
    assert {line.split("=")[0] for line in example.splitlines() if line and not line.startswith("#")} == {
        "REFINERY_INTERNAL_TOKEN", "REFINERY_ADMIN_TOKEN", "REFINERY_ENCRYPTION_KEY"}
