"""deploy/kubernetes/, checked by reading it: Kubernetes' own kinds against Kubernetes' schemas
(kubernetes-validate, offline), the operators' resources for what their operators need, and
every name the manifests and docs/operations.md use against the objects that will exist."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from contracts.topology import Topology
from controller.app import create_controller_app
from mqgate_cli import build_parser
from runtime.health import create_health_app

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.30.0"  # the oldest Kubernetes the manifests are checked against
NAMESPACE = "mqgate"


def _objects() -> list[dict[str, Any]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


OBJECTS = _objects()
# what the custom resources are, to their operators (kubernetes-validate knows none of them)
CUSTOM = {("rabbitmq.com/v1beta1", "RabbitmqCluster"), ("rabbitmq.com/v1beta1", "User"),
          ("rabbitmq.com/v1beta1", "Permission"), ("keda.sh/v1alpha1", "ScaledObject"),
          ("keda.sh/v1alpha1", "TriggerAuthentication")}
BUILT_IN = [o for o in OBJECTS if (o["apiVersion"], o["kind"]) not in CUSTOM]
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
CLUSTER_DOCS = OPERATIONS.split("## From one machine to a cluster", 1)[-1].split("\n## ", 1)[0]


def named(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == kind}


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for deployment in named("Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def config() -> dict[str, str]:
    data: dict[str, str] = named("ConfigMap")["mqgate-config"]["data"]
    return data


def redis_release() -> tuple[str, int]:
    """The Redis Helm release the docs install: its name and how many Redis nodes it runs."""
    command = re.search(r"helm install (\S+) \S*bitnamicharts/redis([^`]*?)\n```",
                        CLUSTER_DOCS, re.DOTALL)
    assert command, "the docs install Bitnami's Redis chart"
    options = command.group(2)
    for needed in ("--namespace mqgate", "sentinel.enabled=true", "architecture=replication",
                   "auth.existingSecret=mqgate-redis",
                   "auth.existingSecretPasswordKey=redis-password"):
        assert needed in options, needed
    replicas = re.search(r"replica\.replicaCount=(\d+)", options)
    assert replicas
    return command.group(1), int(replicas.group(1))


def made_by_operators() -> dict[str, set[str]]:
    """Objects that the operators and the Helm release make, by kind; pods by name (with the
    headless Service that names them in DNS)."""
    made: dict[str, set[str]] = {"Service": set(), "Secret": set(), "Pod": set()}
    for name, cluster in named("RabbitmqCluster").items():
        made["Service"] |= {name, f"{name}-nodes"}
        made["Secret"].add(f"{name}-default-user")
        made["Pod"] |= {f"{name}-server-{i}.{name}-nodes"
                        for i in range(cluster["spec"]["replicas"])}
    release, nodes = redis_release()
    made["Service"] |= {release, f"{release}-headless"}
    made["Pod"] |= {f"{release}-node-{i}.{release}-headless" for i in range(nodes)}
    return made


def secret_keys(name: str) -> set[str]:
    secret = named("Secret")[name]
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


@pytest.mark.parametrize("obj", BUILT_IN, ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_kubernetes_kinds_validate_against_the_kubernetes_schemas(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises on any fault


def test_operator_resources_have_what_their_operators_require() -> None:
    for cluster in named("RabbitmqCluster").values():
        replicas = cluster["spec"]["replicas"]
        assert replicas >= 3 and replicas % 2 == 1  # a majority survives a node's loss
    users = named("User")
    for user in users.values():
        assert user["spec"]["rabbitmqClusterReference"]["name"] in named("RabbitmqCluster")
        secret = user["spec"]["importCredentialsSecret"]["name"]
        assert {"username", "password"} <= secret_keys(secret)
    for permission in named("Permission").values():
        spec = permission["spec"]
        assert spec["rabbitmqClusterReference"]["name"] in named("RabbitmqCluster")
        assert spec["vhost"] == "/"
        usernames = {named("Secret")[u["spec"]["importCredentialsSecret"]["name"]]
                     ["stringData"]["username"] for u in users.values()}
        assert spec["user"] in usernames
        namespace = config()["MQGATE_NAMESPACE"]
        assert set(spec["permissions"].values()) == {f"^{re.escape(namespace)}\\."}
    for auth in named("TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["parameter"] == "host"
            assert ref["key"] in secret_keys(ref["name"])
    for scaled in named("ScaledObject").values():
        spec = scaled["spec"]
        assert spec["scaleTargetRef"]["name"] in named("Deployment")
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["triggers"]
        for trigger in spec["triggers"]:
            assert trigger["type"] == "rabbitmq"
            assert trigger["authenticationRef"]["name"] in named("TriggerAuthentication")
            meta = trigger["metadata"]
            assert meta["mode"] in ("QueueLength", "MessageRate")
            assert float(meta["value"]) > 0
            assert meta["protocol"] == "amqp"


def test_the_autoscaler_watches_each_models_own_queue() -> None:
    topology = Topology(namespace=config()["MQGATE_NAMESPACE"])
    for scaled in named("ScaledObject").values():
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["metadata"]["queueName"] == topology.lane(trigger["name"])


def test_every_object_is_in_the_namespace() -> None:
    assert set(named("Namespace")) == {NAMESPACE}
    for obj in OBJECTS:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_every_secret_and_config_map_referenced_exists() -> None:
    made = made_by_operators()
    for deployment, container in containers():
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in named("ConfigMap")
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            if ref["name"] in named("Secret"):
                assert ref["key"] in secret_keys(ref["name"]), env["name"]
            else:
                assert ref["name"] in made["Secret"], (deployment["metadata"]["name"], ref)


def _hosts(text: str) -> set[str]:
    return set(re.findall(rf"([a-z0-9.-]+)\.{NAMESPACE}\.svc", text))


def test_every_host_named_is_a_service_or_a_pod_that_will_exist() -> None:
    made = made_by_operators()
    services = set(named("Service")) | made["Service"]
    texts = [yaml.safe_dump(o) for o in OBJECTS if o["kind"] in ("ConfigMap", "Secret",
                                                                  "Deployment")]
    hosts = set().union(*(_hosts(text) for text in texts))
    assert hosts
    for host in hosts:
        assert host in services or host in made["Pod"], host


def test_services_and_budgets_select_one_deployment_each() -> None:
    def selected(labels: dict[str, str]) -> list[str]:
        return [name for name, d in named("Deployment").items()
                if labels.items() <= d["spec"]["template"]["metadata"]["labels"].items()]

    for service in named("Service").values():
        [target] = selected(service["spec"]["selector"])
        ports = {p["name"] for c in named("Deployment")[target]["spec"]["template"]["spec"]
                 ["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    budgets = named("PodDisruptionBudget")
    for budget in budgets.values():
        assert len(selected(budget["spec"]["selector"]["matchLabels"])) == 1
    # one api and one controller always up; dispatchers taken down one at a time
    assert budgets["mqgate-api"]["spec"]["minAvailable"] == 1
    assert budgets["mqgate-controller"]["spec"]["minAvailable"] == 1
    assert budgets["mqgate-dispatcher"]["spec"]["maxUnavailable"] == 1
    assert {selected(b["spec"]["selector"]["matchLabels"])[0] for b in budgets.values()} == set(
        named("Deployment"))


def _app(args: list[str]) -> FastAPI:
    settings = Settings()
    if args[0] == "api":
        return create_app(settings)
    if args[0] == "controller":
        return create_controller_app(settings)
    return create_health_app({})  # a dispatcher's side port


def test_processes_parse_and_probes_hit_their_real_routes() -> None:
    assert {c["args"][0] for _d, c in containers()} == {"api", "dispatcher", "controller"}
    for _deployment, container in containers():
        args = build_parser().parse_args(container["args"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if args.command == "dispatcher":
            assert config()["MQGATE_METRICS_HOST"] == "0.0.0.0"
            assert int(config()["MQGATE_METRICS_PORT"]) in ports.values()
        else:
            assert args.host == "0.0.0.0"
            assert args.port in ports.values()
        # the app without its lifespan (no I/O): a route that exists answers, if not well
        client = TestClient(_app(container["args"]), raise_server_exceptions=False)
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            check = container[probe]["httpGet"]
            assert check["path"] == path
            assert client.get(path).status_code not in (404, 405)
            assert check["port"] in ports


def test_settings_are_real_and_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {f"MQGATE_{name.upper()}" for name in Settings.model_fields}
    assert set(config()) <= fields
    for _deployment, container in containers():
        env = dict(config())
        secrets: set[str] = set()
        for item in container.get("env", []):
            if "valueFrom" in item:
                secrets.add(item["name"])
                continue
            # $(NAME) expands only variables defined before, in the same list
            assert set(re.findall(r"\$\((\w+)\)", item["value"])) <= secrets
            env[item["name"]] = re.sub(r"\$\((\w+)\)", "secret", item["value"])
        assert {key for key in env if key.startswith("MQGATE_")} <= fields
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        replicas = named("RabbitmqCluster")["mqgate-rabbitmq"]["spec"]["replicas"]
        assert len(settings.amqp_urls) == replicas  # one URL per node
        assert len(settings.redis_sentinels) == redis_release()[1]
        assert settings.queue_type == "quorum"


def test_killed_only_after_their_grace() -> None:
    grace = float(config()["MQGATE_SHUTDOWN_GRACE"])
    for deployment, container in containers():
        spec = deployment["spec"]["template"]["spec"]
        hook = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        before = float(hook[1]) if hook else 0.0  # ["sleep", seconds]
        assert spec["terminationGracePeriodSeconds"] >= before + grace + 5, (
            deployment["metadata"]["name"])


def test_the_image_carries_every_package() -> None:
    """The manifests run the image built from the Dockerfile: it must hold every package
    of the distribution."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]
                ["include"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(),
                            re.MULTILINE))
    assert packages <= copied


def test_the_docs_name_only_objects_that_exist() -> None:
    made = made_by_operators()
    existing = {o["metadata"]["name"] for o in OBJECTS} | set().union(*made.values())
    existing |= {f"{name}-server" for name in named("RabbitmqCluster")}  # the StatefulSet
    mentioned = set(re.findall(r"`(mqgate-[a-z0-9-]+)`", CLUSTER_DOCS))
    assert mentioned
    assert mentioned <= existing
    for path in re.findall(r"deploy/kubernetes/[a-z-]+\.yaml", OPERATIONS):
        assert (ROOT / path).is_file(), path
