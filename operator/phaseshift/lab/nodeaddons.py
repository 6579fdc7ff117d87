"""The real node's cluster add-ons as objects: CoreDNS (the cluster DNS the kubelet
points pods at) and metrics-server (CPU and memory for HorizontalPodAutoscalers).

Both run as pods from images built here, with explicit commands. CoreDNS answers for
the cluster domain only and forwards nothing: pods have no resolver beyond the cluster.
"""

from __future__ import annotations

from typing import Any

from phaseshift.lab.nodeconfig import CLUSTER_DOMAIN, NodeNetwork

Object = dict[str, Any]
NAMESPACE = "kube-system"

COREFILE = f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    cache 30
    reload
}}
"""


def _meta(name: str, labels: dict[str, str] | None = None) -> Object:
    meta: Object = {"name": name, "namespace": NAMESPACE}
    if labels:
        meta["labels"] = labels
    return meta


def _deployment(name: str, labels: dict[str, str], pod_spec: Object) -> Object:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _rbac(
    name: str, rules: list[Object], extra_bindings: list[Object] | None = None
) -> list[Object]:
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    role_ref = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": f"phaseshift:{name}",
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"phaseshift:{name}"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"phaseshift:{name}"},
            "roleRef": role_ref,
            "subjects": subject,
        },
        *(extra_bindings or []),
    ]


def _probe(path: str, port: int) -> Object:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 2, "failureThreshold": 3}


def coredns(network: NodeNetwork, image: str) -> list[Object]:
    labels = {"k8s-app": "kube-dns"}
    pod = {
        "serviceAccountName": "coredns",
        "priorityClassName": "system-cluster-critical",
        "dnsPolicy": "Default",
        "containers": [
            {
                "name": "coredns",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/coredns", "-conf", "/etc/coredns/Corefile"],
                "ports": [
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                ],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "32Mi"},
                    "limits": {"memory": "128Mi"},
                },
                "readinessProbe": _probe("/ready", 8181),
                "livenessProbe": _probe("/health", 8080),
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                },
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
    }
    rules = [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    ]  # fmt: skip
    return [
        *_rbac("coredns", rules),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("coredns"),
            "data": {"Corefile": COREFILE},
        },
        _deployment("coredns", labels, pod),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("kube-dns", {**labels, "kubernetes.io/name": "CoreDNS"}),
            "spec": {
                "selector": labels,
                "clusterIP": network.dns_service_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        },
    ]


SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


def metrics_server(image: str) -> list[Object]:
    labels = {"k8s-app": "metrics-server"}
    pod = {
        "serviceAccountName": "metrics-server",
        "priorityClassName": "system-cluster-critical",
        "containers": [
            {
                "name": "metrics-server",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": [
                    "/metrics-server",
                    "--cert-dir=/tmp",
                    "--secure-port=10250",
                    "--kubelet-preferred-address-types=InternalIP",
                    "--kubelet-use-node-status-port",
                    # The kubelet's serving certificate is signed by the cluster's CA.
                    f"--kubelet-certificate-authority={SERVICE_ACCOUNT_CA}",
                    "--metric-resolution=15s",
                ],
                "ports": [{"name": "https", "containerPort": 10250, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {**_probe("/readyz", 10250), "httpGet": {"path": "/readyz", "port": 10250, "scheme": "HTTPS"}},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }  # fmt: skip
    rules = [
        {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]},
    ]
    # Delegated authentication and authorization of the aggregated API's callers.
    auth_reader = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta("phaseshift:metrics-server:auth-reader"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": NAMESPACE}],
    }  # fmt: skip
    delegator = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "phaseshift:metrics-server:auth-delegator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": NAMESPACE}],
    }  # fmt: skip
    return [
        *_rbac("metrics-server", rules, [auth_reader, delegator]),
        _deployment("metrics-server", labels, pod),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("metrics-server", labels),
            "spec": {
                "selector": labels,
                "ports": [{"name": "https", "port": 443, "targetPort": "https"}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io", "labels": labels},
            "spec": {
                "service": {"name": "metrics-server", "namespace": NAMESPACE},
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                # metrics-server serves a self-signed certificate, as in its own manifests.
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


def addons(network: NodeNetwork, coredns_image: str, metrics_server_image: str) -> list[Object]:
    return [*coredns(network, coredns_image), *metrics_server(metrics_server_image)]
