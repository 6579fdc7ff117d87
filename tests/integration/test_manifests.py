"""manifests/ on the local control plane: every object accepted, and the operator's RBAC
both sufficient and no broader than it needs.

Sufficient: `phaseshift run` authenticates as the installed ServiceAccount (a token from
the TokenRequest API, not the admin kubeconfig), watches every namespace as the
Deployment does, and carries a plan from phase 1 to 2. Not excessive: the same
credentials are refused RBAC, node and namespace changes, Secrets outside the
namespaces granted to it, and kinds it never renders.

kwok fakes the pods of the installed Deployment, so the operator under test is the
local process; what is being tested is the identity it runs as.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from phaseshift.api import GROUP, PLURAL, VERSION
from phaseshift.lab.cluster import LocalCluster
from phaseshift.lab.exporter import SyntheticExporter
from phaseshift.lab.operator_process import OperatorProcess
from phaseshift.lab.plans import PLAN, USERS_FOR_PHASE, World, plan_body
from phaseshift.lab.prometheus import PrometheusServer
from phaseshift.lab.wait import wait_for

pytestmark = pytest.mark.integration

SYSTEM_NAMESPACE = "phaseshift-system"
SERVICE_ACCOUNT = "phaseshift-operator"
LEASE = "phaseshift-operator"
REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "manifests"
# The `kubectl` fixture of tests/conftest.py: runs kubectl as the cluster's admin.
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
APP_OVERLAY = MANIFESTS / "overlays" / "shop"


def kustomize(directory: Path) -> list[dict[str, Any]]:
    built = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(built) if doc]


@pytest.fixture(scope="module")
def installed(kubectl: Kubectl) -> list[dict[str, Any]]:
    kubectl("apply", "-k", str(MANIFESTS), "--server-side")
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/scaleplans.phaseshift.dev",
    )  # fmt: skip
    return kustomize(MANIFESTS)


@pytest.fixture
def granted(kubectl: Kubectl, installed: list[dict[str, Any]], namespace: str) -> str:
    """The overlay's RoleBinding, moved to the test's namespace as `kustomize edit set
    namespace` would: the namespace the operator may manage."""
    for doc in kustomize(APP_OVERLAY):
        if doc["kind"] == "RoleBinding":
            doc["metadata"]["namespace"] = namespace
            kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc))
    return namespace


@pytest.fixture(scope="module")
def sa_kubeconfig(
    cluster: LocalCluster,
    kube: client.ApiClient,
    installed: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A kubeconfig holding a short-lived token of the operator's ServiceAccount."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    issued = client.CoreV1Api(kube).create_namespaced_service_account_token(
        SERVICE_ACCOUNT, SYSTEM_NAMESPACE, request
    )
    assert issued.status is not None
    token = issued.status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = dict(admin["clusters"][0]["cluster"])
    for key in ("certificate-authority",):
        # Paths in the cluster's kubeconfig are relative to its own directory.
        if key in server and not Path(server[key]).is_absolute():
            server[key] = str(cluster.kubeconfig.parent / server[key])
    path = tmp_path_factory.mktemp("sa") / "kubeconfig.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": server}],
                "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
                "contexts": [
                    {"name": "sa", "context": {"cluster": "local", "user": SERVICE_ACCOUNT}}
                ],
                "current-context": "sa",
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def as_operator(sa_kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(sa_kubeconfig))


def test_every_object_of_the_install_is_accepted(
    kubectl: Kubectl, installed: list[dict[str, Any]]
) -> None:
    kinds = {doc["kind"] for doc in installed}
    assert {"CustomResourceDefinition", "ClusterRole", "Role", "Deployment"} <= kinds
    for doc in installed:
        meta = doc["metadata"]
        scope = ["-n", meta["namespace"]] if "namespace" in meta else []
        found = kubectl("get", doc["kind"], meta["name"], *scope, "-o", "name", check=False)
        assert found.returncode == 0, f"{doc['kind']}/{meta['name']} missing: {found.stderr}"
    # A second apply changes nothing: the install is declarative.
    again = kubectl("apply", "-k", str(MANIFESTS), "--server-side").stdout
    assert all(line.endswith("serverside-applied") for line in again.splitlines())
    unchanged = kubectl("diff", "-k", str(MANIFESTS), "--server-side", check=False)
    assert unchanged.returncode == 0, unchanged.stdout


def test_the_app_overlay_is_accepted(kubectl: Kubectl, installed: list[dict[str, Any]]) -> None:
    kubectl("apply", "-k", str(APP_OVERLAY), "--server-side")
    binding = kubectl("get", "rolebinding", "phaseshift-operator", "-n", "shop", "-o", "yaml")
    subject = yaml.safe_load(binding.stdout)["subjects"][0]
    assert (subject["namespace"], subject["name"]) == (SYSTEM_NAMESPACE, SERVICE_ACCOUNT)
    kubectl("delete", "-k", str(APP_OVERLAY), "--wait=false")


def test_the_operator_promotes_as_its_service_account(
    cluster: LocalCluster,
    kube: client.ApiClient,
    granted: str,
    sa_kubeconfig: Path,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    with SyntheticExporter() as exporter:
        prometheus.add_target(f"exporter-{id(exporter)}", exporter.address)
        world = World(kube, granted, exporter)
        operator = OperatorProcess(
            sa_kubeconfig, granted, tmp_path, lease_namespace=SYSTEM_NAMESPACE, clusterwide=True
        )
        operator.start()
        try:
            world.users(USERS_FOR_PHASE[1])
            world.create(plan_body(prometheus.url))
            world.wait_phase(1)
            world.users(USERS_FOR_PHASE[2])
            status = world.wait_phase(2)
            assert [(h["from"], h["to"]) for h in status["history"]] == [(1, 2)]
            expected, live = world.expected(2), world.live_keys()
            assert expected <= live, f"phase 2 is missing {expected - live}"
            assert world.condition("Ready")["status"] == "True"
            # Its Events were accepted (events.k8s.io, listed here through core v1).
            assert "TransitionComplete" in world.events()
            lease = client.CoordinationV1Api(kube).read_namespaced_lease(LEASE, SYSTEM_NAMESPACE)
            assert lease.spec is not None and lease.spec.holder_identity
            # Deleting the plan needs the operator to remove its finalizer.
            world.custom.delete_namespaced_custom_object(GROUP, VERSION, granted, PLURAL, PLAN)
            wait_for(lambda: not plans_in(world, granted), what="the plan to be deleted")
        finally:
            operator.stop()
    log = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("operator-*.log"))
    # Refusals about this test's namespace, the operator's own, or cluster scope; plans
    # other tests left in namespaces never granted to the operator are rightly refused.
    ours = (f"/namespaces/{granted}/", f"/namespaces/{SYSTEM_NAMESPACE}/")
    refused = [
        line
        for line in log.splitlines()
        if ("403" in line or "Forbidden" in line)
        and ("/namespaces/" not in line or any(n in line for n in ours))
    ]
    assert not refused, "\n".join(refused[:20])


def plans_in(world: World, namespace: str) -> list[Any]:
    found = world.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert isinstance(found, dict)
    return list(found["items"])


def forbidden(call: Callable[[], object]) -> bool:
    try:
        call()
    except ApiException as e:
        if e.status == 403:
            return True
        raise
    return False


def _meta(name: str) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name)


@pytest.fixture
def elsewhere(kube: client.ApiClient) -> Iterator[str]:
    """A namespace not granted to the operator, holding a Secret it did not create."""
    core = client.CoreV1Api(kube)
    name = f"other-{id(core):x}"[:20]
    core.create_namespace(client.V1Namespace(metadata=_meta(name)))
    core.create_namespaced_secret(
        name, client.V1Secret(metadata=_meta("db"), string_data={"password": "x"})
    )
    yield name
    core.delete_namespace(name)


def test_the_service_account_is_refused_what_the_operator_never_does(
    kube: client.ApiClient, as_operator: client.ApiClient, granted: str, elsewhere: str
) -> None:
    node = str(client.CoreV1Api(kube).list_node().items[0].metadata.name)  # type: ignore[union-attr]
    rbac = client.RbacAuthorizationV1Api(as_operator)
    core = client.CoreV1Api(as_operator)
    coordination = client.CoordinationV1Api(as_operator)
    role = client.V1Role(
        metadata=_meta("escalate"),
        rules=[client.V1PolicyRule(api_groups=["*"], resources=["*"], verbs=["*"])],
    )
    attempts: dict[str, Callable[[], object]] = {
        # RBAC: no way to widen its own rights, anywhere.
        "create a ClusterRole": lambda: rbac.create_cluster_role(
            client.V1ClusterRole(metadata=_meta("escalate"), rules=role.rules)
        ),
        "patch its own ClusterRole": lambda: rbac.patch_cluster_role(
            "phaseshift-operator", {"metadata": {"labels": {"x": "y"}}}
        ),
        "bind a ClusterRole": lambda: rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=_meta("escalate"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
                ),
                subjects=[
                    client.RbacV1Subject(
                        kind="ServiceAccount", name=SERVICE_ACCOUNT, namespace=SYSTEM_NAMESPACE
                    )
                ],
            )
        ),
        "create a Role in a managed namespace": lambda: rbac.create_namespaced_role(granted, role),
        "create a Role in its own namespace": lambda: rbac.create_namespaced_role(
            SYSTEM_NAMESPACE, role
        ),
        "delete its RoleBinding": lambda: rbac.delete_namespaced_role_binding(
            "phaseshift-operator", granted
        ),
        # Nodes and namespaces.
        "list nodes": lambda: core.list_node(),
        "label a node": lambda: core.patch_node(node, {"metadata": {"labels": {"x": "y"}}}),
        "create a namespace": lambda: core.create_namespace(
            client.V1Namespace(metadata=_meta("made-by-operator"))
        ),
        "delete a namespace": lambda: core.delete_namespace(elsewhere),
        "label a namespace": lambda: core.patch_namespace(
            granted, {"metadata": {"labels": {"x": "y"}}}
        ),
        # Secrets outside the namespaces granted to it.
        "read a Secret in another namespace": lambda: core.read_namespaced_secret("db", elsewhere),
        "list Secrets in another namespace": lambda: core.list_namespaced_secret(elsewhere),
        "list Secrets cluster-wide": lambda: core.list_secret_for_all_namespaces(),
        # Workloads outside granted namespaces, and kinds it never renders.
        "create a ConfigMap in another namespace": lambda: core.create_namespaced_config_map(
            elsewhere, client.V1ConfigMap(metadata=_meta("x"))
        ),
        "create a Pod in a managed namespace": lambda: core.create_namespaced_pod(
            granted,
            client.V1Pod(
                metadata=_meta("x"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="x", image="x")]),
            ),
        ),
        "read a Lease in another namespace": lambda: coordination.list_namespaced_lease(
            "kube-system"
        ),
    }
    allowed = [what for what, call in attempts.items() if not forbidden(call)]
    assert not allowed, f"the operator's ServiceAccount may: {allowed}"
