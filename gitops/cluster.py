"""A fast pre-check of who may reach whom in the cluster, from the rendered trees alone (no cluster, no Go).

``make test`` checks the same flows on the real thing (``gitops.clustercheck``: the Pods and Services KServe
and kube-controller-manager really make, judged by network-config-analyzer) and that this evaluator agrees with
it on every connection; this module is what ``mlops manifests validate`` runs where no control plane is built.

A rendered tree holds an InferenceService, not the Deployment, pods and Service KServe's
controller makes of it; the NetworkPolicies, though, act on those pods and on pod ports
(after a Service has translated its port). This module models what KServe creates, from
its source, and evaluates the NetworkPolicies over every pod of a tree, so a flow is
checked the way packets travel:

KServe (RawDeployment mode; ``Standard`` in 0.16), for an InferenceService ``<isvc>``:

- the predictor's pods carry the InferenceService's labels plus
  ``serving.kserve.io/inferenceservice: <isvc>`` and ``component: predictor``
  (``pkg/controller/v1beta1/inferenceservice/components/predictor.go``) and
  ``app: isvc.<isvc>-predictor``, the selector of its Service (``constants.GetRawServiceLabel``);
- they run the ServingRuntime's container (its ports: 8080 here) and, when
  ``spec.predictor.logger`` (or a batcher) is set, KServe's agent on 9081
  (``pkg/webhook/admission/pod/agent_injector.go``; ``constants.InferenceServiceDefaultAgentPort``);
  the storage initializer is an init container of the same pod, so its traffic is the pod's;
- the Service ``<isvc>-predictor`` listens on 80 and targets 8080, or 9081 when a logger or
  a batcher is set (``pkg/controller/v1beta1/inferenceservice/reconcilers/service/
  service_reconciler.go``, ``createDefaultSvc``).

The NetworkPolicy rules are Kubernetes' (``k8s.io/api/networking/v1`` types.go): a pod selected by a policy
of a type is isolated in that direction; a connection then needs a rule of the source's egress and of the
destination's ingress that both match the peer, the pod port and the protocol (TCP unless a port says
otherwise). A policy without ``policyTypes`` is of type Ingress, and Egress too when it has egress rules; an
``ipBlock`` matches an address in its CIDR but none of its ``except``. Pods of namespaces the tree does not
fence (another team's) are not judged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

AGENT_PORT = 9081  # KServe's agent (payload logger, batcher)
SERVICE_PORT = 80  # the port of the Services KServe creates
LOGGER_OR_BATCHER = ("logger", "batcher")


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies see it: namespace (None: outside the cluster, at ``ip``), labels, the ports it
    listens on with their protocols."""

    name: str
    namespace: str | None
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[int, str], ...] = ()
    named_ports: tuple[tuple[str, int], ...] = ()
    ip: str | None = None

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def __str__(self) -> str:
        return self.name


def pod(
    name: str, namespace: str | None, labels: dict[str, str], ports: Iterable = (), named=(), ip: str | None = None
) -> Pod:
    """``ports``: numbers (TCP) or (number, protocol) pairs."""
    pairs = {(p, "TCP") if isinstance(p, int) else (int(p[0]), p[1]) for p in ports}
    return Pod(name, namespace, tuple(sorted(labels.items())), tuple(sorted(pairs)), tuple(sorted(named)), ip)


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    selector: tuple[tuple[str, str], ...]
    ports: tuple[tuple[int, int | str], ...]  # (port, targetPort)

    def target(self, port: int) -> int | str:
        for listened, target in self.ports:
            if listened == port:
                return target
        raise KeyError(f"Service {self.name} does not listen on {port}")


def _labels(meta: Obj | None) -> dict[str, str]:
    return dict((meta or {}).get("labels") or {})


def _container_ports(spec: Obj) -> tuple[list[tuple[int, str]], list[tuple[str, int]]]:
    numbers, named = [], []
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            numbers.append((int(port["containerPort"]), port.get("protocol", "TCP")))
            if port.get("name"):
                named.append((port["name"], int(port["containerPort"])))
    return numbers, named


def predictor(isvc: Obj, runtimes: dict[str, Obj], namespace: str) -> tuple[Pod, Service]:
    """The predictor pod and Service KServe creates for ``isvc`` (see the module doc for the sources)."""
    name = isvc["metadata"]["name"]
    spec = isvc["spec"]["predictor"]
    component = f"{name}-predictor"
    labels = {
        **_labels(isvc["metadata"]),
        **(spec.get("labels") or {}),
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app": f"isvc.{component}",
    }
    runtime = runtimes.get((spec.get("model") or {}).get("runtime", ""), {})
    ports, named = _container_ports(runtime.get("spec") or {})
    ports = ports or [(8080, "TCP")]  # KServe's default model server port (constants.InferenceServiceDefaultHttpPort)
    agent = any(spec.get(key) for key in LOGGER_OR_BATCHER)
    target = AGENT_PORT if agent else ports[0][0]
    predictor_pod = pod(component, namespace, labels, [*ports, *([AGENT_PORT] if agent else [])], named)
    service = Service(component, namespace, (("app", f"isvc.{component}"),), ((SERVICE_PORT, target),))
    return predictor_pod, service


def tree_pods(objects: list[Obj], namespace: str) -> tuple[list[Pod], list[Service]]:
    """Every pod the tree makes (Deployments, CronJobs, the predictors KServe creates) and every Service."""
    pods, services = [], []
    runtimes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServingRuntime"}
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        ns = meta.get("namespace", namespace)
        template = None
        if kind in ("Deployment", "StatefulSet", "Job"):
            template = obj["spec"]["template"]
        elif kind == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
        elif kind == "InferenceService":
            predictor_pod, service = predictor(obj, runtimes, ns)
            pods.append(predictor_pod)
            services.append(service)
        elif kind == "Service":
            ports = tuple((int(p["port"]), p.get("targetPort", p["port"])) for p in obj["spec"].get("ports") or [])
            selector = tuple(sorted((obj["spec"].get("selector") or {}).items()))
            services.append(Service(meta["name"], ns, selector, ports))
        if template is not None:
            ports, named = _container_ports(template["spec"])
            pods.append(pod(meta["name"], ns, _labels(template.get("metadata")), ports, named))
    return pods, services


def behind(service: Service, port: int, pods: list[Pod]) -> list[tuple[Pod, int]]:
    """The pods a connection to ``service:port`` reaches, with the pod port it arrives on."""
    target = service.target(port)
    reached = []
    for candidate in pods:
        if candidate.namespace == service.namespace and set(service.selector) <= set(candidate.labels):
            number = dict(candidate.named_ports).get(target) if isinstance(target, str) else int(target)
            if number is not None:
                reached.append((candidate, number))
    return reached


def _selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and present and labels[key] in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
        ):
            return False
    return True


def _in_block(block: Obj, ip: str | None) -> bool:
    """An ipBlock: the address is in ``cidr`` and in none of ``except``."""
    import ipaddress

    if ip is None:
        return False
    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"], strict=False):
        return False
    return not any(address in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])


def _peer_matches(peer: Obj, policy_namespace: str, other: Pod) -> bool:
    if "ipBlock" in peer:
        return _in_block(peer["ipBlock"], other.ip)
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other.namespace}):
            return False
    elif other.namespace != policy_namespace:
        return False
    return _selects(peer.get("podSelector"), other.label_map)


def _port_matches(rule_ports: list[Obj] | None, port: int, protocol: str, destination: Pod) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = dict(destination.named_ports).get(wanted)
        end = entry.get("endPort", wanted)
        if wanted is not None and wanted <= port <= end:
            return True
    return False


def policy_types(policy: Obj) -> list[str]:
    """``spec.policyTypes``, or its default: Ingress, and Egress when the policy has egress rules."""
    spec = policy["spec"]
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])]


@dataclass
class Fences:
    """The NetworkPolicies of a tree over its own pods (``ours``), evaluated as Kubernetes does."""

    policies: list[Obj]
    ours: set[str] = field(default_factory=set)

    def _direction(self, subject: Pod, other: Pod, port: int, protocol: str, destination: Pod, kind: str) -> bool:
        if subject.name not in self.ours:
            return True  # another's pod (the ingress controller, the store): its own policies are not ours to judge
        key, peers_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
        selecting = [
            p
            for p in self.policies
            if p["metadata"].get("namespace") == subject.namespace
            and kind in policy_types(p)
            and _selects(p["spec"].get("podSelector"), subject.label_map)
        ]
        if not selecting:
            return True
        for policy in selecting:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if (not peers or any(_peer_matches(p, policy["metadata"]["namespace"], other) for p in peers)) and (
                    _port_matches(rule.get("ports"), port, protocol, destination)
                ):
                    return True
        return False

    def allows(self, source: Pod, destination: Pod, port: int, protocol: str = "TCP") -> bool:
        """May ``source`` open a connection to ``destination`` on its pod port ``port`` over ``protocol``?"""
        return self._direction(source, destination, port, protocol, destination, "Egress") and self._direction(
            destination, source, port, protocol, destination, "Ingress"
        )


# --- the flows the product needs (docs/cluster.md's "Network flows" lists the same) ------------------------------

#: The peers outside the trees, labelled and listening as their upstream installs make them (the real-control-
#: plane check creates Pods just like these: gitops/clustercheck.py PEERS).
DNS = pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, [(53, "UDP"), (53, "TCP")])
#: The other DNS forms an overlay may name (k8s/components/dns-*): OpenShift's DNS pods (the dns operator's
#: DaemonSet, 5353) and an address (NodeLocal DNSCache's hostNetwork pods at a link-local address).
OPENSHIFT_DNS = pod(
    "openshift-dns",
    "openshift-dns",
    {"dns.operator.openshift.io/daemonset-dns": "default"},
    [(5353, "UDP"), (5353, "TCP")],
)
#: A flow's destination meaning "the cluster's DNS, whichever form the tree's mpg-dns policy names".
TO_DNS = "DNS"
DNS_NAMES = (DNS.name, OPENSHIFT_DNS.name, "DNS at an address")
INGRESS_CONTROLLER = pod("ingress controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, [80, 443])
PROMETHEUS = pod("Prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, [9090])
KFP_API = pod("KFP API", "kubeflow", {"app": "ml-pipeline"}, [8888, 8887])
ISTIOD = pod("istiod", "istio-system", {"app": "istiod"}, [15012, 15017])


@dataclass(frozen=True)
class Flow:
    """A connection the product makes: ``destination`` is a pod of the tree or an outside peer, with the pod
    port (``name:port``), or a Service (``svc/name:port``) that KServe or the tree defines."""

    what: str
    source: str
    destination: str


SERVING_FLOWS = (
    Flow("ingress controller -> client page", "ingress controller", "svc/mpg-client:80"),
    Flow("client -> predictor (predict, infer, metadata, readiness)", "mpg-client", "svc/mpg-predictor:80"),
    Flow("client -> monitor (/feedback)", "mpg-client", "svc/mpg-monitor:80"),
    Flow("KServe's agent -> monitor (payload log)", "mpg-predictor", "svc/mpg-monitor:80"),
    Flow("storage initializer -> model store", "mpg-predictor", "model store"),
    Flow("report job -> every predictor pod (/metrics)", "mpg-monitor-report", "svc/mpg-predictor-pods:8080"),
    Flow("report job -> model store (the model card)", "mpg-monitor-report", "model store"),
    Flow("monitor -> PostgreSQL", "mpg-monitor", "PostgreSQL"),
    Flow("report job -> PostgreSQL", "mpg-monitor-report", "PostgreSQL"),
    Flow("Prometheus -> predictor container (/metrics)", "Prometheus", "mpg-predictor:8080"),
    Flow("Prometheus -> monitor (/metrics)", "Prometheus", "mpg-monitor:8080"),
    *(
        Flow(f"{name} -> DNS", name, TO_DNS)
        for name in ("mpg-client", "mpg-predictor", "mpg-monitor", "mpg-monitor-report")
    ),
)
SUBMITTER = "mpg-production-nightly"
KFP_FLOWS = (
    Flow("nightly submitter -> KFP API", SUBMITTER, "KFP API:8888"),
    Flow("nightly submitter -> DNS", SUBMITTER, TO_DNS),
)
KFP_MULTI_USER_FLOWS = (*KFP_FLOWS, Flow("nightly submitter's sidecar -> istiod", SUBMITTER, "istiod:15012"))


def _config(objects: list[Obj], name: str) -> dict[str, str] | None:
    found = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    return (found[0].get("data") or {}) if found else None


def dns_peer(objects: list[Obj]) -> Pod:
    """The cluster's DNS as the tree's mpg-dns policy names it: kube-dns pods (the default), OpenShift's, or an
    address (an ipBlock: NodeLocal DNSCache), listening on the ports the policy opens."""
    policy = next((o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "mpg-dns"), None)
    rules = (policy or {}).get("spec", {}).get("egress") or []
    peer = ((rules[0].get("to") or [{}])[0]) if rules else {}
    if "ipBlock" in peer:
        import ipaddress

        address = str(ipaddress.ip_network(peer["ipBlock"]["cidr"], strict=False).network_address)
        ports = [(int(p["port"]), p.get("protocol", "TCP")) for p in rules[0].get("ports") or []]
        return pod("DNS at an address", None, {}, ports, ip=address)
    namespace = (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
    return OPENSHIFT_DNS if namespace == OPENSHIFT_DNS.namespace else DNS


def outside_peers(objects: list[Obj]) -> list[Pod]:
    """The pods outside the tree its flows reach: the model store and the database where the overlay's
    ConfigMaps mpg-model-store and mpg-database say."""
    peers = [dns_peer(objects), INGRESS_CONTROLLER, PROMETHEUS, KFP_API, ISTIOD]
    store = _config(objects, "mpg-model-store")
    if store and "podPort" in store:
        peers.append(pod("model store", store.get("namespace") or None, {}, [int(store["podPort"])]))
    database = _config(objects, "mpg-database")
    if database:
        labels = {"app.kubernetes.io/name": database["name"]}
        peers.append(pod("PostgreSQL", database["namespace"], labels, [int(database["port"])]))
    return peers


Hop = tuple[str, str, int, str]  # source, destination, pod port, protocol


@dataclass(frozen=True)
class Reachability:
    """Every (source, destination pod, pod port, protocol) of a tree and whether the NetworkPolicies allow it."""

    allowed: dict[Hop, bool]
    needed: dict[Flow, list[Hop]]  # each flow -> the pod-level connections it makes

    @property
    def blocked(self) -> list[Flow]:
        return [flow for flow, hops in self.needed.items() if not hops or not all(self.allowed[h] for h in hops)]

    @property
    def unneeded(self) -> list[Hop]:
        needed = {hop for hops in self.needed.values() for hop in hops}
        return sorted(key for key, ok in self.allowed.items() if ok and key not in needed)


def evaluate(pods: list[Pod], services: list[Service], peers: list[Pod], policies: list[Obj], flows: Iterable[Flow]):
    """The NetworkPolicies over ``pods`` (ours: fenced by ``policies``) and ``peers`` (another's), and the
    pod-level connections each flow makes."""
    ours = {p.name for p in pods}
    everyone = {p.name: p for p in [*pods, *peers]}
    fences = Fences(policies, ours)
    allowed = {
        (source.name, destination.name, port, protocol): fences.allows(source, destination, port, protocol)
        for source in everyone.values()
        for destination in everyone.values()
        for port, protocol in destination.ports
        if source is not destination and (source.name in ours or destination.name in ours)
    }
    needed: dict[Flow, list[Hop]] = {}
    for flow in flows:
        if flow.destination.startswith("svc/"):
            name, port = flow.destination[4:].rsplit(":", 1)
            service = next((s for s in services if s.name == name), None)
            hops = [] if service is None else behind(service, int(port), pods)
            needed[flow] = [(flow.source, p.name, number, "TCP") for p, number in hops]
        else:
            name, _, port = flow.destination.partition(":")
            if name == TO_DNS:  # the one DNS peer among the outside peers (dns_peer)
                name = next((p.name for p in peers if p.name in DNS_NAMES), name)
            target = everyone.get(name)
            listening = target.ports if target else ()
            needed[flow] = [(flow.source, name, n, proto) for n, proto in listening if not port or n == int(port)]
        needed[flow] = (
            [hop for hop in needed[flow] if hop in allowed] if all(h in allowed for h in needed[flow]) else []
        )
    return Reachability(allowed, needed)


def reachability(objects: list[Obj], flows: Iterable[Flow], namespace: str = "") -> Reachability:
    """Evaluate the tree's NetworkPolicies for every pair of pods (the tree's, KServe's, the outside peers)."""
    pods, services = tree_pods(objects, namespace)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return evaluate(pods, services, outside_peers(objects), policies, flows)
