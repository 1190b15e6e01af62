"""infra/k8s NetworkPolicies, evaluated offline: a small evaluator of the NetworkPolicy rules
(pod and namespace selectors, ipBlock, ports by number or name, policies adding up) decides
each flow between the built pods and outside endpoints, and the tests check that exactly the
flows that exist are allowed. Hand-written: no library evaluates NetworkPolicies offline."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from schemas.topics import STAGES
from tests.unit.test_k8s_manifests import BUILDS, NAMESPACES, Build, _build

pytestmark = pytest.mark.usefixtures("without_runner_settings")

APP = ["accessa-api", *(f"accessa-{s}" for s in STAGES)]
JOBS = ["accessa-migrate", "accessa-reprocess-gc", "accessa-storage-gc", "accessa-gc"]
CONSOLE = "accessa-console"  # the operator's console: Kafka and Postgres as ops, no ingress
KAFKA_CLIENTS = {*APP, "accessa-migrate", CONSOLE}
S3_CLIENTS = {"accessa-api", "accessa-parser", "accessa-chunker", "accessa-storage-gc"}
LLAMAPARSE_CLIENTS = {"accessa-parser"}
OPENAI_CLIENTS = {"accessa-api", "accessa-embedder"}
INTERNET = "203.0.113.10"  # a public address (TEST-NET-3)
METADATA = "169.254.169.254"  # the cloud instance metadata service
CLUSTER_IP = "10.96.0.20"  # a private, in-cluster address


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)
    ports: dict[str, int] = field(default_factory=dict, hash=False)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector; {} selects everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", []),
            "NotIn": not present or value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


class Policies:
    def __init__(self, build: Build) -> None:
        self.namespace = NAMESPACES[build.name] or "accessa-base"
        self.policies = build.kind("NetworkPolicy")
        self.pods = {
            p.name: p
            for p in (
                Pod(
                    o["metadata"]["name"],
                    self.namespace,
                    o["spec"]["template"]["metadata"]["labels"]
                    if o["kind"] != "CronJob"
                    else o["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
                    {
                        port["name"]: port["containerPort"]
                        for c in _pod_spec(o)["containers"]
                        for port in c.get("ports", [])
                        if "name" in port
                    },
                )
                for o in build.objects
                if o["kind"] in ("Deployment", "Job", "CronJob")
            )
        }

    def _selecting(self, pod: Pod, direction: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.policies
            if direction in p["spec"].get("policyTypes", ["Ingress"])
            and _matches(p["spec"]["podSelector"], pod.labels)
        ]

    def _peer(self, peer: dict[str, Any], other: Pod | str) -> bool:
        if isinstance(other, str):  # an address outside the cluster's pods
            if "ipBlock" not in peer:
                return False
            block = peer["ipBlock"]
            ip = ipaddress.ip_address(other)
            return ip in ipaddress.ip_network(block["cidr"]) and not any(
                ip in ipaddress.ip_network(e) for e in block.get("except", [])
            )
        if "ipBlock" in peer:
            return False  # pod IPs are private: every ipBlock here excepts them
        ns_labels = {"kubernetes.io/metadata.name": other.namespace}
        if "namespaceSelector" in peer:
            if not _matches(peer["namespaceSelector"], ns_labels):
                return False
        elif other.namespace != self.namespace:
            return False
        return _matches(peer.get("podSelector", {}), other.labels)

    @staticmethod
    def _port(rule: dict[str, Any], port: int, protocol: str, target: Pod | str) -> bool:
        if "ports" not in rule:
            return True
        for p in rule["ports"]:
            if p.get("protocol", "TCP") != protocol:
                continue
            want = p.get("port")
            if want is None:
                return True
            if isinstance(want, str):  # a named port of the destination pod
                want = target.ports.get(want) if isinstance(target, Pod) else None
            if want == port:
                return True
        return False

    def _allows(self, pod: Pod, other: Pod | str, port: int, protocol: str, way: str) -> bool:
        selecting = self._selecting(pod, way)
        if not selecting:
            return True
        key, peers = ("egress", "to") if way == "Egress" else ("ingress", "from")
        target = other if way == "Egress" else pod
        return any(
            (not rule.get(peers) or any(self._peer(x, other) for x in rule[peers]))
            and self._port(rule, port, protocol, target)
            for p in selecting
            for rule in p["spec"].get(key, [])
        )

    def flow(self, src: Pod | str, dst: Pod | str, port: int, protocol: str = "TCP") -> bool:
        """Whether a connection src -> dst:port is let through: src's egress if src is one of
        this namespace's pods, and dst's ingress if dst is."""
        ok = True
        if isinstance(src, Pod) and src.namespace == self.namespace:
            ok &= self._allows(src, dst, port, protocol, "Egress")
        if isinstance(dst, Pod) and dst.namespace == self.namespace:
            ok &= self._allows(dst, src, port, protocol, "Ingress")
        return ok


def _pod_spec(o: dict[str, Any]) -> dict[str, Any]:
    if o["kind"] == "CronJob":
        return o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return o["spec"]["template"]["spec"]


def _outside(name: str, namespace: str, **labels: str) -> Pod:
    return Pod(name, namespace, labels)


DNS = _outside("coredns", "kube-system", **{"k8s-app": "kube-dns"})
BROKER = _outside("kafka-broker", "kafka", **{"strimzi.io/kind": "Kafka"})
PROMETHEUS = _outside("prometheus", "monitoring", **{"app.kubernetes.io/name": "prometheus"})
INGRESS = _outside("ingress-nginx", "ingress-nginx", **{"app.kubernetes.io/name": "ingress-nginx"})
STRANGER = _outside("somebody", "default", app="other")


@pytest.fixture(params=sorted(BUILDS))
def build(request: pytest.FixtureRequest) -> Build:
    return _build(request.param)


@pytest.fixture
def net(build: Build) -> Policies:
    return Policies(build)


def test_a_default_deny_selects_every_pod(build: Build, net: Policies) -> None:
    denies = [
        p
        for p in build.kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(denies) == 1
    for pod in net.pods.values():
        assert net._selecting(pod, "Ingress") and net._selecting(pod, "Egress"), pod.name


def test_every_accessa_pod_resolves_names(net: Policies) -> None:
    for name in (*APP, *JOBS, CONSOLE):
        pod = net.pods[name]
        assert net.flow(pod, DNS, 53, "UDP") and net.flow(pod, DNS, 53, "TCP"), name
        assert not net.flow(pod, STRANGER, 53, "UDP"), name


def test_only_kafka_clients_reach_kafka(build: Build, net: Policies) -> None:
    broker = net.pods["kafka"] if build.name == "local" else BROKER
    port = 9092
    for name in (*APP, *JOBS, CONSOLE):
        assert net.flow(net.pods[name], broker, port) == (name in KAFKA_CLIENTS), name
    if build.name == "local":  # KEDA reads the lag of the in-namespace broker
        keda = _outside("keda-operator", "keda", app="keda-operator")
        assert net.flow(keda, broker, port)
        assert not net.flow(STRANGER, broker, port)
        assert not net.flow(net.pods["accessa-mocks"], broker, port)


def test_every_accessa_process_reaches_postgres(build: Build, net: Policies) -> None:
    postgres: Pod | str = net.pods["postgres"] if build.name == "local" else CLUSTER_IP
    for name in (*APP, *JOBS, CONSOLE):
        assert net.flow(net.pods[name], postgres, 5432), name
        assert not net.flow(net.pods[name], postgres, 5433), name
    if build.name == "local":
        assert not net.flow(net.pods["accessa-mocks"], postgres, 5432)
        assert not net.flow(STRANGER, postgres, 5432)


def test_internet_egress_only_for_the_third_party_callers(build: Build, net: Policies) -> None:
    callers = S3_CLIENTS | LLAMAPARSE_CLIENTS | OPENAI_CLIENTS
    for name in (*APP, *JOBS, CONSOLE):
        pod = net.pods[name]
        assert net.flow(pod, INTERNET, 443) == (name in callers), name
        assert not net.flow(pod, INTERNET, 80), name
        assert not net.flow(pod, METADATA, 80) and not net.flow(pod, METADATA, 443), name
        assert not net.flow(pod, CLUSTER_IP, 443), name


def test_local_stand_ins_reach_only_their_callers(build: Build, net: Policies) -> None:
    if build.name != "local":
        pytest.skip("the local overlay's in-cluster mocks and S3")
    mocks, s3 = net.pods["accessa-mocks"], net.pods["s3"]
    local_s3 = S3_CLIENTS | {"accessa-migrate"}  # the migrate Job's bucket step
    for name in (*APP, *JOBS):
        pod = net.pods[name]
        # The parser reaches the mock LlamaParse, never the mock OpenAI; and the reverse.
        assert net.flow(pod, mocks, 8091) == (name in LLAMAPARSE_CLIENTS), name
        assert net.flow(pod, mocks, 8092) == (name in OPENAI_CLIENTS), name
        assert net.flow(pod, s3, 5000) == (name in local_s3), name
        assert net.flow(pod, net.pods["otel-collector"], 4318), name
    # The mock LlamaParse posts webhooks to the API; it reaches nothing else of ours.
    assert net.flow(mocks, net.pods["accessa-api"], 8000)
    assert not net.flow(mocks, net.pods["accessa-parser"], 9101)
    assert not net.flow(STRANGER, mocks, 8091)


def test_the_api_is_reachable_on_its_port_only(net: Policies) -> None:
    api = net.pods["accessa-api"]
    port = api.ports["http"]
    assert net.flow(INGRESS, api, port)
    assert net.flow(STRANGER, api, port)  # webhooks and clients; the API authenticates
    assert net.flow(PROMETHEUS, api, port)
    assert not net.flow(INGRESS, api, port + 1)


def test_no_pod_connects_to_the_console(net: Policies) -> None:
    """Port-forward only: not the ingress controller, not Prometheus, not a pod of this
    namespace (a compromised parser or API), not the mocks."""
    console = net.pods[CONSOLE]
    port = console.ports["http"]
    peers = [INGRESS, PROMETHEUS, STRANGER, *(p for n, p in net.pods.items() if n != CONSOLE)]
    for peer in peers:
        assert not net.flow(peer, console, port), peer.name
    assert not net.flow(STRANGER, console, 8000)


def test_the_console_reaches_only_kafka_postgres_and_dns(build: Build, net: Policies) -> None:
    console = net.pods[CONSOLE]
    for name, pod in net.pods.items():
        if name in ("kafka", "postgres"):
            continue  # the local overlay's broker and database, checked above
        for port in {*pod.ports.values(), 8000, 8091, 8092, 4318, 5000}:
            assert not net.flow(console, pod, port), (name, port)
    assert not net.flow(console, INTERNET, 443)


def test_only_prometheus_scrapes_the_stages(net: Policies) -> None:
    for stage in STAGES:
        pod = net.pods[f"accessa-{stage}"]
        port = pod.ports["metrics"]
        assert net.flow(PROMETHEUS, pod, port), stage
        assert not net.flow(PROMETHEUS, pod, port + 100), stage
        assert not net.flow(STRANGER, pod, port), stage
        assert not net.flow(INGRESS, pod, port), stage


def test_a_compromised_parser_reaches_no_other_accessa_pod(net: Policies) -> None:
    parser = net.pods["accessa-parser"]
    for name, pod in net.pods.items():
        if name == "accessa-parser":
            continue
        for port in {*pod.ports.values(), 8000, 9101, 9102, 9103, 9104}:
            if name == "accessa-mocks" and port == 8091:
                continue  # the local mock LlamaParse: its LlamaParse
            if name in ("kafka", "postgres", "s3", "otel-collector"):
                continue  # the local overlay's dependencies, checked above
            assert not net.flow(parser, pod, port), (name, port)


def test_every_egress_rule_names_its_ports(build: Build) -> None:
    """No egress rule opens every port; only Postgres (a managed database has no pod to select)
    and DNS go to any destination on their port."""
    for p in build.kind("NetworkPolicy"):
        for rule in p["spec"].get("egress", []):
            assert rule.get("ports"), p["metadata"]["name"]
            if not rule.get("to"):
                assert [x["port"] for x in rule["ports"]] == [5432], p["metadata"]["name"]
