"""``deploy/helm/tollgate``: rendered by Helm's own template engine and validated offline.

Rendering: helm-python-sdk (Helm v4's Go SDK as a native library: the same engine as ``helm
template``, no binary, no cluster). Validation: kubernetes-validate, strict (unknown fields are
errors), against the Kubernetes JSON schemas it bundles, for the oldest version the chart
supports and the newest the package knows. ServiceMonitor (a Prometheus Operator CRD, in no
Kubernetes schema) is checked by hand against the Services it must select.

Beyond the schemas, each value set is held to what the planes really do: their flags exist in
their parsers, readiness is the data plane's /healthz, the grace period covers the drain, every
directory the data plane writes is a writable volume, every secret comes from a Secret.

This module is long because each value set is rendered and validated the same way, and the checks
of what a platform team relies on (probes, drain, PDB, HPA, TLS, metrics) read the same rendered
manifests.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.settings import Settings as ControlPlaneSettings
from tests.ci import unavailable
from tests.deploy.test_image import UID

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tollgate"
RELEASE, NAMESPACE = "gw", "tollgate"
SECRET_ENV = {"TOLLGATE_DB", "TOLLGATE_ADMIN_TOKEN", "TOLLGATE_DATAPLANE_TOKEN", "TOLLGATE_REDIS"}
SECRET_ENV |= {"TOLLGATE_MASTER_KEY", "TOLLGATE_PREVIOUS_MASTER_KEY"}
FLUSH_BOUND_S = 20  # values.yaml: the data plane's shutdown bound past the grace


def _helm() -> Any:
    try:
        import helm_python
    except ImportError:
        unavailable("helm-python-sdk is not installed: run `make install` (the dev extra has it)")
    return helm_python


def _validator() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate is not installed: run `make install`")
    return kubernetes_validate


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tls": {
        "tls": {"enabled": True, "existingSecret": "tollgate-grpc-tls"},
        "postgresql": {"tls": {"caSecret": "pg-ca"}},
        "redis": {"tls": {"caSecret": "redis-ca", "caKey": "ca.pem"}},
    },
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "networkPolicy": {
            "enabled": True,
            "controlPlaneClients": [{"podSelector": {"matchLabels": {"app": "gwctl"}}}],
            "metricsScrapers": [
                {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}},
            ],
        },
        "secrets": {"masterKey": {"previousKey": "previous-master-key"}},
    },
    "fixed-size": {
        "dataPlane": {
            "autoscaling": {"enabled": False},
            "replicas": 4,
            "resources": {"requests": {"cpu": "2500m", "memory": "512Mi"}},
            "publicUrl": "https://gateway.example.com",
            "drain": {"preStopSleepSeconds": 10, "drainSeconds": 3, "gracefulSeconds": 300},
            "extraArgs": ["--otlp-endpoint=http://otel-collector:4318"],
        },
        "controlPlane": {"replicas": 3, "auditRetentionDays": 400, "migrateOnStart": False},
        "metrics": {"podAnnotations": False},
        "serviceAccount": {"create": False, "name": "tollgate-sa"},
    },
    "single-process": {
        "dataPlane": {"autoscaling": {"enabled": False}, "replicas": 1, "workers": 1},
        "redis": {"existingSecret": ""},
    },
}


@cache
def defaults() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    helm = _helm()
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@cache
def rendered(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    values = VALUE_SETS[name]
    return merged(defaults(), values), render(values)


def one(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"{len(found)} {kind} for {component}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def flags(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            out[name] = value
    return out


@cache
def serve_help(plane: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gwctl.main", plane, "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


# --- every manifest is valid Kubernetes ---------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_manifest_validates_against_the_kubernetes_schemas(name: str) -> None:
    kv = _validator()
    _, docs = rendered(name)
    assert docs
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    oldest = chart["kubeVersion"].removeprefix(">=").split("-")[0]
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: test_service_monitors_select_the_planes
        for version in (oldest, kv.latest_version()):
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                path = "/".join(str(p) for p in exc.path)
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']} ({version}): {path}: {exc}")
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_is_clean(name: str) -> None:
    report = _helm().lint(str(CHART), VALUE_SETS[name], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


def test_kinds_of_the_default_release() -> None:
    _, docs = rendered("defaults")
    kinds = sorted(
        (d["kind"], d["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))
        for d in docs
    )
    assert kinds == [
        ("Deployment", "controlplane"),
        ("Deployment", "dataplane"),
        ("HorizontalPodAutoscaler", "dataplane"),
        ("PodDisruptionBudget", "controlplane"),
        ("PodDisruptionBudget", "dataplane"),
        ("Service", "controlplane"),
        ("Service", "dataplane"),
        ("ServiceAccount", ""),
    ]
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart never holds a secret value"


# --- the control plane --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_control_plane(name: str) -> None:
    values, docs = rendered(name)
    deployment = one(docs, "Deployment", "controlplane")
    assert deployment["spec"]["replicas"] == values["controlPlane"]["replicas"] >= 2
    c = container(deployment)
    assert c["args"][:2] == ["controlplane", "serve"]
    env = {e["name"]: e for e in c["env"]}
    refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in env.items() if "valueFrom" in e}
    assert refs["TOLLGATE_DB"] == {"name": "tollgate-postgresql", "key": "url"}
    assert refs["TOLLGATE_ADMIN_TOKEN"]["key"] != refs["TOLLGATE_DATAPLANE_TOKEN"]["key"]
    assert refs["TOLLGATE_MASTER_KEY"] == {"name": "tollgate-master-key", "key": "master-key"}
    # The real parser takes the rendered command line (tokens stand in for the Secrets).
    fake = {"TOLLGATE_ADMIN_TOKEN": "a" * 24, "TOLLGATE_DATAPLANE_TOKEN": "d" * 24}
    fake |= {k: "x" for k in refs if k not in fake}
    fake |= {e["name"]: e["value"] for e in c["env"] if "value" in e}
    settings = ControlPlaneSettings.from_args(c["args"][2:], env=fake)
    settings.validate()
    assert settings.migrate == values["controlPlane"]["migrateOnStart"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert settings.listen == f"0.0.0.0:{ports['grpc']}"
    assert settings.metrics_listen == f"0.0.0.0:{ports['metrics']}"
    tls = values["tls"]["enabled"]
    assert bool(settings.tls_cert) == tls
    for p in (c["readinessProbe"], c["livenessProbe"], c["startupProbe"]):
        # gRPC health (plaintext); Kubernetes' gRPC probe cannot speak TLS, so the port then.
        assert (p.get("grpc") == {"port": ports["grpc"]}) != tls
        assert ("tcpSocket" in p) == tls
    service = one(docs, "Service", "controlplane")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports


# --- the data plane -----------------------------------------------------------------------------


def expected_workers(values: dict[str, Any]) -> int:
    dp = values["dataPlane"]
    if dp.get("workers"):
        return int(dp["workers"])
    cpu = str(dp["resources"]["requests"]["cpu"])
    cores = int(cpu[:-1]) // 1000 if cpu.endswith("m") else int(float(cpu))
    return max(cores, 1)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_data_plane_flags_are_the_servers(name: str) -> None:
    values, docs = rendered(name)
    c = container(one(docs, "Deployment", "dataplane"))
    assert c["args"][:2] == ["dataplane", "serve"]
    given = flags(c["args"])
    known = serve_help("dataplane")
    for flag in given:
        assert f"{flag} " in known or f"{flag}\n" in known, f"gwctl dataplane serve has no {flag}"
    dp = values["dataPlane"]
    assert given["--workers"] == str(expected_workers(values))
    assert float(given["--drain-seconds"]) == dp["drain"]["drainSeconds"]
    assert float(given["--graceful-s"]) == dp["drain"]["gracefulSeconds"]
    assert (
        given["--control-plane"]
        == f"{RELEASE}-tollgate-controlplane:{values['controlPlane']['port']}"
    )
    assert ("--tls-ca" in given) == values["tls"]["enabled"]
    env = {e["name"]: e for e in c["env"]}
    assert ("TOLLGATE_REDIS" in env) == bool(values["redis"]["existingSecret"])
    assert ("TOLLGATE_PUBLIC_URL" in env) == bool(dp["publicUrl"])


def test_workers_follow_the_cpu_request() -> None:
    for cpu, workers in (("1", 1), ("2", 2), (2, 2), ("1500m", 1), ("3999m", 3), ("500m", 1)):
        values = {"dataPlane": {"resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}}
        c = container(one(render(values), "Deployment", "dataplane"))
        assert flags(c["args"])["--workers"] == str(workers), cpu
    explicit = {"dataPlane": {"workers": 3}}
    c = container(one(render(explicit), "Deployment", "dataplane"))
    assert flags(c["args"])["--workers"] == "3"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_readiness_and_drain(name: str) -> None:
    values, docs = rendered(name)
    deployment = one(docs, "Deployment", "dataplane")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    port = c["ports"][0]
    assert (
        port["name"] == "http"
        and f"0.0.0.0:{port['containerPort']}" == flags(c["args"])["--listen"]
    )
    # Readiness is /healthz: 503 without a snapshot and from SIGTERM on ("draining"); checked
    # often enough that the drain window is seen (period <= drain).
    ready = c["readinessProbe"]
    assert ready["httpGet"] == {"path": "/healthz", "port": "http"}
    drain = values["dataPlane"]["drain"]
    assert ready["periodSeconds"] * ready["failureThreshold"] <= drain["drainSeconds"]
    # Liveness must not be /healthz: a data plane waiting for its first snapshot is alive.
    for probe in (c["livenessProbe"], c["startupProbe"]):
        assert probe["httpGet"]["path"] == "/"
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == ["sleep", str(drain["preStopSleepSeconds"])]
    assert pod["terminationGracePeriodSeconds"] == (
        drain["preStopSleepSeconds"] + drain["drainSeconds"] + drain["gracefulSeconds"]
        + FLUSH_BOUND_S
    )  # fmt: skip
    # Liveness may not kill a pod that is still inside its grace (the listener stays up until
    # preStop + drain have passed; liveness needs period x threshold to fail).
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > drain["drainSeconds"]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_hpa_and_disruption_budget(name: str) -> None:
    values, docs = rendered(name)
    dp = values["dataPlane"]
    deployment = one(docs, "Deployment", "dataplane")
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if dp["autoscaling"]["enabled"]:
        (hpa,) = hpas
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert "cpu" in container(deployment)["resources"]["requests"], "utilization needs it"
    else:
        assert not hpas and deployment["spec"]["replicas"] == dp["replicas"]
    pdb = one(docs, "PodDisruptionBudget", "dataplane")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["maxUnavailable"] >= 1, "0 would block every node drain"
    service = one(docs, "Service", "dataplane")
    assert service["spec"]["selector"] == selector


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_security_context_and_writable_paths(name: str) -> None:
    _, docs = rendered(name)
    for component in ("controlplane", "dataplane"):
        deployment = one(docs, "Deployment", component)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == UID == pod["securityContext"]["runAsGroup"]
        assert pod["automountServiceAccountToken"] is False
        c = container(deployment)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        writable = {
            m["mountPath"]
            for m in c["volumeMounts"]
            if "emptyDir" in volumes[m["name"]] and not m.get("readOnly")
        }
        assert "/tmp" in writable
        if component == "dataplane":
            # Everything the data plane writes lives under --state-dir: node-id, the snapshot
            # cache (dataplane/sync/subscriber.py) and the spool (dataplane/sync/spool.py).
            state = flags(c["args"])["--state-dir"]
            assert any(state == w or state.startswith(w + "/") for w in writable), state
        for e in c["env"]:
            if e["name"] in SECRET_ENV:
                assert "secretKeyRef" in e.get("valueFrom", {}), f"{e['name']} inline"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_mounted_files_are_the_ones_the_flags_name(name: str) -> None:
    """--tls-cert/--tls-key/--tls-ca name files in mounted Secrets, with the keys they hold."""
    values, docs = rendered(name)
    for component in ("controlplane", "dataplane"):
        deployment = one(docs, "Deployment", component)
        c = container(deployment)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounted: set[str] = set()
        for m in c["volumeMounts"]:
            secret = volumes[m["name"]].get("secret")
            if secret is None:
                continue
            items = secret.get("items")
            names = [i["path"] for i in items] if items else ["tls.crt", "tls.key", "ca.crt"]
            mounted |= {f"{m['mountPath']}/{n}" for n in names}
        for flag in ("--tls-cert", "--tls-key", "--tls-ca"):
            path = flags(c["args"]).get(flag)
            if path:
                assert path in mounted, f"{component} {flag}={path} is not mounted"
    if values["postgresql"]["tls"]["caSecret"]:
        mounts = container(one(docs, "Deployment", "controlplane"))["volumeMounts"]
        assert "/etc/tollgate/postgresql-ca" in {m["mountPath"] for m in mounts}
    if values["redis"]["tls"]["caSecret"]:
        mounts = container(one(docs, "Deployment", "dataplane"))["volumeMounts"]
        assert "/etc/tollgate/redis-ca" in {m["mountPath"] for m in mounts}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_metrics_scraping(name: str) -> None:
    values, docs = rendered(name)
    services = {c: one(docs, "Service", c) for c in ("controlplane", "dataplane")}
    for component, port_name in (("controlplane", "metrics"), ("dataplane", "http")):
        deployment = one(docs, "Deployment", component)
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        port = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}[port_name]
        if values["metrics"]["podAnnotations"]:
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(port)
            assert annotations["prometheus.io/path"] == "/metrics"
        else:
            assert "prometheus.io/scrape" not in annotations
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    if not values["metrics"]["serviceMonitor"]["enabled"]:
        assert not monitors
        return
    assert len(monitors) == 2
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        assert monitor["metadata"]["labels"]["release"] == "prom"
        service = services[component]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert set(monitor["spec"]) == {"selector", "endpoints"}
        assert set(endpoint) == {"port", "path", "interval"}


def test_network_policies_admit_the_data_planes_to_the_control_plane() -> None:
    _, docs = rendered("monitoring")
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    cp = policies[f"{RELEASE}-tollgate-controlplane"]
    dp_labels = one(docs, "Deployment", "dataplane")["spec"]["template"]["metadata"]["labels"]
    grpc_rule = cp["spec"]["ingress"][0]
    peers = grpc_rule["from"]
    assert peers[0]["podSelector"]["matchLabels"].items() <= dp_labels.items()
    assert {"podSelector": {"matchLabels": {"app": "gwctl"}}} in peers
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert cp["spec"]["ingress"][1]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"redis": {"existingSecret": ""}},
            "several data-plane processes need Redis",
        ),
        (
            {
                "redis": {"existingSecret": ""},
                "dataPlane": {"autoscaling": {"enabled": False}, "replicas": 1, "workers": 2},
            },
            "several data-plane processes need Redis",
        ),
        ({"secrets": {"tokens": {"name": ""}}}, "secrets.tokens.name: name an existing Secret"),
        ({"postgresql": {"existingSecret": ""}}, "postgresql.existingSecret"),
        ({"tls": {"enabled": True}}, "tls.enabled: name the kubernetes.io/tls Secret"),
        # values.schema.json: a misspelt or impossible value fails instead of being ignored.
        ({"controlPlane": {"replicas": 1}}, "/controlPlane/replicas': minimum: got 1, want 2"),
        ({"dataPlane": {"replica": 3}}, "additional properties 'replica' not allowed"),
        ({"dataPlane": {"workers": 0}}, "/dataPlane/workers"),
        ({"dataPlane": {"publicUrl": "gateway.example.com"}}, "/dataPlane/publicUrl"),
    ],
)
def test_refuses_values_that_cannot_work(values: dict[str, Any], message: str) -> None:
    helm = _helm()
    with pytest.raises(helm.HelmError, match=message):
        render(values)
