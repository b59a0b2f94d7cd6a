"""The Kubernetes manifests in deploy/kubernetes render and validate, offline.

Rendering: ``kustomization.yaml`` is read the way kustomize reads it (the
subset these manifests use: ``resources``, ``components``, JSON 6902
``patches``); every resource must exist and parse. Where ``kubectl`` is on the
PATH, ``kubectl kustomize`` renders the same directories and must give the
same objects (it runs offline).

Validation: every document is checked against the OpenAPI-derived JSON
schemas that the pinned ``kubernetes-validate`` package bundles (no network),
in their strict form, where an unknown or misspelled field is an error, for
the oldest and the newest Kubernetes we claim.

Then the properties deploy/README.md promises: several replicas, a
disruption budget and topology spread over the Deployment's pods, the probes
on /readyz and /healthz, a grace period longer than preStop plus DRAIN_TIME,
and an optional HPA aimed at the Deployment.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
COMPONENT = "autoscaling"

# The oldest Kubernetes the manifests are written for, and the newest that the
# pinned kubernetes-validate carries schemas for.
KUBERNETES_VERSIONS = ("1.30", "1.37")

NAME = "notify-push-gateway"
# Kinds no bundled schema covers (custom resources): checked by hand below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# Keys of kustomization.yaml this renderer understands; anything else must
# be taught to it (and to the kubectl comparison) first.
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "components", "patches"}
# The gateway's default when DRAIN_TIME is not set (README.md).
DEFAULT_DRAIN_TIME = 3.0

Doc = dict[str, Any]


# --- rendering ---------------------------------------------------------------


def load_documents(path: Path) -> list[Doc]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
        for key in ("apiVersion", "kind", "metadata"):
            assert key in doc, f"{path}: a document has no {key}"
        assert doc["metadata"].get("name"), f"{path}: a {doc['kind']} has no metadata.name"
    return docs


def read_kustomization(directory: Path, kind: str) -> Doc:
    path = directory / "kustomization.yaml"
    assert path.is_file(), f"{directory} has no kustomization.yaml"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a mapping"
    assert data.get("kind") == kind, f"{path}: kind is {data.get('kind')!r}, expected {kind}"
    unknown = set(data) - KUSTOMIZATION_KEYS
    assert not unknown, f"{path}: keys this test does not render: {sorted(unknown)}"
    return data


def json_pointer_parent(doc: Any, pointer: str) -> tuple[Any, str | int]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last: str | int = int(parts[-1]) if isinstance(node, list) else parts[-1]
    return node, last


def apply_patch(docs: list[Doc], patch: Doc, where: Path) -> None:
    target = patch["target"]
    matched = [
        doc
        for doc in docs
        if doc["kind"] == target["kind"]
        and doc["metadata"]["name"] == target["name"]
        and doc["apiVersion"]
        == (f"{target['group']}/{target['version']}" if target.get("group") else target["version"])
    ]
    assert len(matched) == 1, f"{where}: patch target {target} matches {len(matched)} objects"
    for op in yaml.safe_load(patch["patch"]):
        parent, key = json_pointer_parent(matched[0], op["path"])
        if op["op"] == "remove":
            assert key in parent if isinstance(key, str) else key < len(parent), (
                f"{where}: {op['path']} is not in {target['kind']}/{target['name']}"
            )
            del parent[key]
        elif op["op"] in ("add", "replace"):
            parent[key] = op["value"]
        else:
            pytest.fail(f"{where}: patch op {op['op']!r} is not rendered by this test")


def render(
    directory: Path, components: list[str] | None = None, *, kind: str = "Kustomization"
) -> list[Doc]:
    """What ``kubectl kustomize directory`` gives, for the features used here.

    ``components`` replaces the kustomization's own list (to render the
    optional ones that are commented out there).
    """
    data = read_kustomization(directory, kind)
    docs: list[Doc] = []
    for entry in data.get("resources", []):
        path = directory / entry
        assert path.exists(), f"{directory}/kustomization.yaml lists {entry}, which does not exist"
        docs.extend(render(path) if path.is_dir() else load_documents(path))
    for entry in data.get("components", []) if components is None else components:
        path = directory / entry
        assert path.is_dir(), (
            f"{directory}/kustomization.yaml: component {entry} is not a directory"
        )
        component = read_kustomization(path, "Component")
        for resource in component.get("resources", []):
            assert (path / resource).is_file(), f"{path}: resource {resource} does not exist"
            docs.extend(load_documents(path / resource))
        for patch in component.get("patches", []):
            apply_patch(docs, patch, path)
    for patch in data.get("patches", []):
        apply_patch(docs, patch, directory)
    keys = [(d["apiVersion"].split("/")[0], d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"{directory}: the same object twice: {keys}"
    return docs


def base() -> list[Doc]:
    return render(KUBE)


def with_autoscaling() -> list[Doc]:
    return render(KUBE, components=[COMPONENT])


def one(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


def schema_errors(doc: Doc, version: str) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(item) for item in error.path) or "(top)"
        return f"{doc['kind']}/{doc['metadata']['name']} at {where}: {error.message}"
    return None


# --- the manifests render ----------------------------------------------------


def test_base_kustomization_lists_the_core_objects() -> None:
    kinds = sorted(doc["kind"] for doc in base())
    assert kinds == ["Deployment", "PodDisruptionBudget", "Service"]


def test_autoscaling_component_is_offered_commented_out() -> None:
    """The component is optional: present as a directory, named in the base
    kustomization only in a comment that uncommenting turns on."""
    text = (KUBE / "kustomization.yaml").read_text()
    assert "components" not in (yaml.safe_load(text) or {})
    assert re.search(rf"^#components:\n#  - {COMPONENT}$", text, re.MULTILINE)
    kinds = sorted(doc["kind"] for doc in with_autoscaling())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]


def test_every_manifest_file_is_rendered_or_documented_as_optional() -> None:
    """No manifest lies around unused: each is in a kustomization, or the base
    kustomization names it as one to add."""
    listed = {KUBE / r for r in read_kustomization(KUBE, "Kustomization")["resources"]}
    component = KUBE / COMPONENT
    listed |= {component / r for r in read_kustomization(component, "Component")["resources"]}
    comment = (KUBE / "kustomization.yaml").read_text()
    for path in manifest_files():
        assert path in listed or path.name in comment, (
            f"{path.name} is neither listed nor mentioned"
        )


def kubectl_kustomize(directory: Path) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on the PATH (the Python rendering above still ran)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def by_key(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def test_kubectl_kustomize_renders_the_same_objects(tmp_path: Path) -> None:
    assert by_key(kubectl_kustomize(KUBE)) == by_key(base())
    # The optional component, switched on the way its comment says.
    copy_dir = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copy_dir)
    text = (copy_dir / "kustomization.yaml").read_text()
    text = text.replace("#components:\n#  - ", "components:\n  - ")
    (copy_dir / "kustomization.yaml").write_text(text)
    assert by_key(kubectl_kustomize(copy_dir)) == by_key(with_autoscaling())


# --- the manifests validate against the Kubernetes schemas -------------------


def test_the_pinned_validator_has_the_schemas() -> None:
    bundled = {kubernetes_validate.major_minor(v) for v in kubernetes_validate.all_versions()}
    assert set(KUBERNETES_VERSIONS) <= bundled


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBE)))
def test_manifest_file_validates(path: Path, version: str) -> None:
    for doc in load_documents(path):
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue  # no bundled schema; test_servicemonitor_scrapes_the_service
        assert schema_errors(doc, version) is None, schema_errors(doc, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_validate(version: str) -> None:
    """After patches (the component removes a field), the result is valid too."""
    for doc in base() + with_autoscaling():
        assert schema_errors(doc, version) is None, schema_errors(doc, version)


def test_the_schema_check_catches_mistakes() -> None:
    """A misspelled field or a wrong type fails: the strict schemas are in use."""
    deployment = one(base(), "Deployment")
    misspelled = copy.deepcopy(deployment)
    container = misspelled["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelled, wrong_type):
        for version in KUBERNETES_VERSIONS:
            assert schema_errors(broken, version) is not None


# --- what the Deployment promises ------------------------------------------


def pod_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    match: dict[str, str] = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def gateway_container(deployment: Doc) -> Doc:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Doc = containers[0]
    return container


def env_value(container: Doc, name: str) -> str | None:
    for entry in container.get("env", []):
        if entry["name"] == name:
            value: str | None = entry.get("value")
            return value
    return None


def test_deployment_runs_several_replicas() -> None:
    deployment = one(base(), "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    assert selects(deployment["spec"]["selector"], pod_labels(deployment))


def test_disruption_budget_covers_the_pods_and_allows_drains() -> None:
    docs = base()
    deployment, pdb = one(docs, "Deployment"), one(docs, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"], pod_labels(deployment))
    spec = pdb["spec"]
    assert ("maxUnavailable" in spec) != ("minAvailable" in spec)
    if "maxUnavailable" in spec:
        assert isinstance(spec["maxUnavailable"], int)
        assert spec["maxUnavailable"] >= 1, "a budget of 0 blocks every node drain"
    else:
        assert isinstance(spec["minAvailable"], int)
        assert spec["minAvailable"] < deployment["spec"]["replicas"], "no pod could ever be evicted"


def test_pods_spread_over_nodes_without_blocking_scheduling() -> None:
    deployment = one(base(), "Deployment")
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    by_topology = {c["topologyKey"]: c for c in constraints}
    assert "kubernetes.io/hostname" in by_topology
    for constraint in constraints:
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert selects(constraint["labelSelector"], pod_labels(deployment))


def http_probe(container: Doc, probe: str) -> Doc:
    assert probe in container, f"no {probe}"
    get: Doc = container[probe]["httpGet"]
    return get


def test_probes_use_readyz_and_healthz_on_the_gateway_port() -> None:
    container = gateway_container(one(base(), "Deployment"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert http_probe(container, "readinessProbe")["path"] == "/readyz"
    assert http_probe(container, "livenessProbe")["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        port = http_probe(container, probe)["port"]
        number = ports[port] if isinstance(port, str) else port
        assert number == int(env_value(container, "PORT") or 7867)


def pre_stop_seconds(container: Doc) -> float:
    pre_stop = container.get("lifecycle", {}).get("preStop")
    if pre_stop is None:
        return 0.0
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", f"cannot tell how long preStop {command} takes"
    return float(command[1])


def test_grace_period_outlasts_pre_stop_and_drain() -> None:
    deployment = one(base(), "Deployment")
    container = gateway_container(deployment)
    drain = float(env_value(container, "DRAIN_TIME") or DEFAULT_DRAIN_TIME)
    grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    assert grace > drain
    assert grace > pre_stop_seconds(container) + drain, "SIGKILL would cut the drain short"


def test_secret_example_has_every_key_the_deployment_reads() -> None:
    container = gateway_container(one(base(), "Deployment"))
    secret = one(load_documents(KUBE / "secret.example.yaml"), "Secret")
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]


# --- Service, Ingress, ServiceMonitor ----------------------------------------


def test_service_reaches_the_pods_without_affinity() -> None:
    docs = base()
    deployment, service = one(docs, "Deployment"), one(docs, "Service")
    labels = pod_labels(deployment)
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    container_ports = {p["name"] for p in gateway_container(deployment)["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports
    assert service["spec"].get("sessionAffinity", "None") == "None", "no sticky sessions needed"


def service_port_names() -> set[str]:
    return {p["name"] for p in one(base(), "Service")["spec"]["ports"]}


def test_ingress_points_at_the_service() -> None:
    service = one(base(), "Service")
    ingress = one(load_documents(KUBE / "ingress.yaml"), "Ingress")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] == "http"
            assert backend["port"]["name"] in service_port_names()


def test_servicemonitor_scrapes_the_service() -> None:
    service = one(base(), "Service")
    monitor = one(load_documents(KUBE / "servicemonitor.yaml"), "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_port_names()
        assert endpoint.get("path", "/metrics") == "/metrics"


# --- the optional HorizontalPodAutoscaler ------------------------------------


def test_hpa_targets_the_deployment_and_owns_the_replica_count() -> None:
    docs = with_autoscaling()
    deployment, hpa = one(docs, "Deployment"), one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in deployment["spec"], "an apply would reset what the HPA chose"


def test_hpa_cpu_target_has_a_cpu_request_to_measure_against() -> None:
    docs = with_autoscaling()
    hpa = one(docs, "HorizontalPodAutoscaler")
    cpu = [
        m
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Resource" and m["resource"]["name"] == "cpu"
    ]
    assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"
    container = gateway_container(one(docs, "Deployment"))
    assert "cpu" in container["resources"]["requests"]


def test_commented_connection_metric_example_is_valid() -> None:
    """The example that scales on active_connection_count, uncommented,
    is a valid HPA metric."""
    lines = (KUBE / COMPONENT / "hpa.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "#- type: Pods")
    indent = lines[start].index("#")
    block = []
    for line in lines[start:]:
        if not line.startswith(" " * indent + "#") or line[indent + 1 : indent + 2] not in (
            "-",
            " ",
        ):
            break
        block.append(line[indent + 1 :])
    example = yaml.safe_load("\n".join(block))
    assert example[0]["pods"]["metric"]["name"] == "active_connection_count"
    hpa = copy.deepcopy(one(with_autoscaling(), "HorizontalPodAutoscaler"))
    hpa["spec"]["metrics"] = example
    for version in KUBERNETES_VERSIONS:
        assert schema_errors(hpa, version) is None, schema_errors(hpa, version)
