"""Structural checks of the Kubernetes manifests in k8s/.

Every kustomization (base, overlays/dev, overlays/prod) is rendered with the
real kustomize (`kustomize build` or `kubectl kustomize`; those tests are skipped
where neither is installed) and checked against the project's own code: topic
and group names from `contracts.topics.Topics`, the TOML config loaded with
`fleet.settings.load_settings`, the worker's drain grace, the Kafka ACLs that
`fleet.topic_access` derives from what router and workers do, and the
SRE guidance in benchmarks/README.md (partitions cap replicas, rebalances pause
the group, lag-based scaling with minutes of stabilisation).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from contracts.topics import Topics
from fleet import topic_access as ta
from fleet.settings import ENV_VARS, SecurityProtocol, Settings, load_settings
from fleet.topic_access import ACL
from tests.k8s.kustomize import build, load_yaml_docs, referenced_files

pytestmark = pytest.mark.unit  # manifests rendered by kustomize and compared with the code: no broker, no fleet

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
ENVS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
OVERLAYS = ("dev", "prod")


def _drain_grace_s() -> float:
    from fleet.settings import WorkerSettings

    return WorkerSettings().drain_grace_s


def _quantity(q: str | int | float) -> float:
    """A Kubernetes quantity as a number (bytes, cores)."""
    s = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, mult in units.items():
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    return float(s)


# -- the rendered environment -----------------------------------------------------
@dataclass
class Env:
    docs: list[dict[str, Any]]
    settings: Settings
    toml_path: Path  # the rendered fleet.toml, written out

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        (hit,) = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        return hit

    def configmap(self, base_name: str) -> dict[str, Any]:
        pattern = rf"{base_name}(-[a-z0-9]{{10}})?"
        (hit,) = [d for d in self.of("ConfigMap") if re.fullmatch(pattern, d["metadata"]["name"])]
        return hit

    @property
    def fleet_env(self) -> dict[str, str]:
        return dict(self.configmap("fleet-env")["data"])

    @property
    def topics(self) -> Topics:
        return self.settings.kafka.topics

    def topic(self, topic_name: str) -> dict[str, Any]:
        (hit,) = [d for d in self.of("KafkaTopic") if d["spec"].get("topicName", d["metadata"]["name"]) == topic_name]
        return hit

    def user(self, component: str) -> dict[str, Any]:
        return self.get("KafkaUser", f"{self.settings.kafka.topic_prefix}-{component}")

    def workers(self) -> dict[str, dict[str, Any]]:
        """model name -> worker Deployment (by its `fleet worker --model NAME` args)."""
        out = {}
        for d in self.of("Deployment"):
            args = _container(d)["args"]
            if args[:1] == ["worker"]:
                assert args[1] == "--model" and len(args) == 3, args
                assert args[2] not in out, f"two Deployments serve model {args[2]}"
                out[args[2]] = d
        return out

    def router(self) -> dict[str, Any]:
        (hit,) = [d for d in self.of("Deployment") if _container(d)["args"] == ["router"]]
        return hit

    def container_env(self, dep: dict[str, Any]) -> dict[str, str]:
        """The container's environment; Secret values stand in as `secret:<name>/<key>`."""
        c = _container(dep)
        env: dict[str, str] = {}
        for ef in c.get("envFrom", []):
            cm = self.get("ConfigMap", ef["configMapRef"]["name"])
            env.update(cm["data"])
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
            elif "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = f"secret:{ref['name']}/{ref['key']}"
            else:
                raise AssertionError(f"unexpected env source {e}")
        return env

    @property
    def strimzi_cluster(self) -> str:
        labels = {d["metadata"]["labels"]["strimzi.io/cluster"] for d in self.of("KafkaTopic") + self.of("KafkaUser")}
        assert len(labels) == 1, f"KafkaTopics and KafkaUsers must name one Strimzi cluster, got {labels}"
        return str(labels.pop())


def _container(dep: dict[str, Any]) -> dict[str, Any]:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{dep['metadata']['name']}: one container per pod expected"
    return containers[0]  # type: ignore[no-any-return]


def _pod(dep: dict[str, Any]) -> dict[str, Any]:
    return dep["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _mount_for(dep: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volumeMount, volume) of the longest mount path containing `path`."""
    mounts = [m for m in _container(dep).get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert mounts, f"{dep['metadata']['name']}: {path} is on no mounted volume"
    m = max(mounts, key=lambda m: len(m["mountPath"]))
    (vol,) = [v for v in _pod(dep)["volumes"] if v["name"] == m["name"]]
    return m, vol


@pytest.fixture(params=list(ENVS), scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Env:
    name = request.param
    docs = build(ENVS[name])
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fleet-config")]
    path = tmp_path_factory.mktemp(f"k8s-{name}") / "fleet.toml"
    path.write_text(cm["data"]["fleet.toml"])
    (cm_env,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fleet-env")]
    return Env(docs, load_settings(path, env=dict(cm_env["data"])), path)


# -- files and kustomizations -----------------------------------------------------
def test_every_yaml_file_parses_without_duplicate_keys() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 10
    for f in files:
        docs = load_yaml_docs(f)
        assert docs, f"{f} is empty"
        for d in docs:
            if isinstance(d, list):  # a JSON 6902 patch
                assert all({"op", "path"} <= set(op) for op in d), f
            elif f.name != "kustomization.yaml":
                assert {"apiVersion", "kind", "metadata"} <= set(d), f"{f}: a document lacks apiVersion/kind/metadata"
                assert d["metadata"].get("name"), f"{f}: a {d['kind']} without a name"


def test_kustomizations_list_every_file_and_only_existing_ones() -> None:
    kdirs = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
    assert {K8S / "base", K8S / "overlays" / "dev", K8S / "overlays" / "prod"} <= set(kdirs)
    for kdir in kdirs:
        refs = referenced_files(kdir)
        for r in refs:
            assert r.exists(), f"{kdir}/kustomization.yaml names {r}, which does not exist"
        owned = {
            f.resolve()
            for f in kdir.rglob("*")
            if f.is_file()
            and f.name != "kustomization.yaml"
            # files under a nested kustomization belong to it
            and not any((p / "kustomization.yaml").exists() for p in f.parents if p != kdir and kdir in p.parents)
        }
        missing = sorted(str(f.relative_to(K8S)) for f in owned - refs)
        assert not missing, f"{kdir.relative_to(K8S)}/kustomization.yaml does not list {missing}"


def test_overlays_build_on_the_base() -> None:
    for name in OVERLAYS:
        (k,) = load_yaml_docs(ENVS[name] / "kustomization.yaml")
        assert "../../base" in k["resources"], name
        assert k.get("namespace"), f"{name} must set the namespace"


# -- topics -----------------------------------------------------------------------
def test_kafka_topics_are_the_contracts_topics(env: Env) -> None:
    t, k = env.topics, env.settings.kafka
    expected = {t.requests, t.dlq, t.control, t.status, t.usage, f"{k.topic_prefix}.replies"}
    expected |= {t.model(m) for m in env.settings.model_names}
    expected |= {t.model_batch(m) for m in env.settings.model_names}
    expected |= {t.tenant_intake(x.name) for x in env.settings.tenants}
    expected.add(t.tenant_state)  # always there: a tenant with limits may be added without a new topic
    expected.add(t.progress)  # the workers' resume state
    got = [d["spec"]["topicName"] for d in env.of("KafkaTopic")]
    assert sorted(got) == sorted(expected)
    for d in env.of("KafkaTopic"):
        assert d["metadata"]["name"] == d["spec"]["topicName"].replace(".", "-")
    assert Topics() == Topics(k.topic_prefix), "manifests assume the default prefix 'llm' (names in ACLs, KEDA)"


def test_topic_sizes_follow_the_config_and_the_guidance(env: Env) -> None:
    t, k = env.topics, env.settings.kafka
    assert env.topic(t.requests)["spec"]["partitions"] == k.intake_partitions
    assert env.topic(f"{k.topic_prefix}.replies")["spec"]["partitions"] == k.reply_partitions
    for m in env.settings.model_names:
        assert env.topic(t.model(m))["spec"]["partitions"] == k.model_partitions, m
        assert env.topic(t.model_batch(m))["spec"]["partitions"] == k.model_partitions, m
    for d in env.of("KafkaTopic"):
        spec, cfg = d["spec"], d["spec"]["config"]
        assert spec["replicas"] == k.replication_factor, d["metadata"]["name"]
        misr = cfg["min.insync.replicas"]
        if spec["replicas"] > 1:  # acks=all: durable on 2, and one broker may be down
            assert 2 <= misr < spec["replicas"], d["metadata"]["name"]
        else:
            assert misr == 1
    retention = {d["spec"]["topicName"]: d["spec"]["config"]["retention.ms"] for d in env.of("KafkaTopic")}
    assert retention[t.dlq] > retention[t.requests], "the DLQ keeps records longer than the intake"
    assert retention[t.dlq] >= 7 * 86_400_000
    assert env.topic(t.tenant_state)["spec"]["config"]["cleanup.policy"] == "compact"
    assert env.topic(t.progress)["spec"]["config"]["cleanup.policy"] == "compact"  # the latest per request
    assert env.topic(t.progress)["spec"]["partitions"] == k.model_partitions
    status = env.topic(t.status)["spec"]["config"]
    assert "compact" in status["cleanup.policy"] or status["retention.ms"] <= 86_400_000
    assert retention[t.control] <= 86_400_000


# -- configuration and env wiring ---------------------------------------------------
def test_fleet_toml_has_no_unknown_keys(env: Env) -> None:
    # the settings refuse unknown keys at every level (ValueError), so a stale or misspelt key fails here
    assert load_settings(env.toml_path, env={}).models == env.settings.models


def test_every_component_gets_a_complete_sasl_ssl_config(env: Env) -> None:
    cluster = env.strimzi_cluster
    fe = env.fleet_env
    assert fe["FLEET_LOG_FORMAT"] == "json"
    assert fe["FLEET_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert fe["FLEET_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    # the router, and each model's workers as their own user (fleet/topic_access.py `services`)
    deployments = {"router": [env.router()]} | {f"worker-{m}": [d] for m, d in env.workers().items()}
    for component, deps in deployments.items():
        for dep in deps:
            name = dep["metadata"]["name"]
            e = env.container_env(dep)
            unknown = {v for v in e if v.startswith("FLEET_")} - set(ENV_VARS) - {"FLEET_CONFIG"}
            assert not unknown, f"{name}: FLEET_ variables the fleet does not read: {unknown}"
            _, cfg_vol = _mount_for(dep, e["FLEET_CONFIG"])
            assert cfg_vol["configMap"]["name"] == env.configmap("fleet-config")["metadata"]["name"]
            assert Path(e["FLEET_CONFIG"]).name in env.configmap("fleet-config")["data"]
            # what the process builds: the mounted TOML overlaid with its environment
            s = load_settings(env.toml_path, env=e)
            user = env.user(component)["metadata"]["name"]
            assert s.kafka.sasl_username == user, f"{name} must authenticate as KafkaUser {user}"
            assert s.kafka.sasl_password == f"secret:{user}/password", name
            # one record key for the router and every worker: what the router signs, the workers check
            assert s.kafka.record_key == "secret:llm-fleet-record-key/key", f"{name} must read the shared record key"
            assert s.kafka.security_protocol is SecurityProtocol.SASL_SSL
            assert s.kafka.sasl_mechanism == "SCRAM-SHA-512"
            assert s.kafka.bootstrap_servers == fe["FLEET_KAFKA_BOOTSTRAP"]
            assert s.log_format == "json"
            assert s.health_file == e["FLEET_HEALTH_FILE"]
            assert s.kafka.ssl_cafile == e["FLEET_KAFKA_SSL_CAFILE"]
            ca_mount, ca_vol = _mount_for(dep, e["FLEET_KAFKA_SSL_CAFILE"])
            assert ca_vol["secret"]["secretName"] == f"{cluster}-cluster-ca-cert", name
            items = {i["path"]: i["key"] for i in ca_vol["secret"].get("items", [])}
            ca_file = Path(e["FLEET_KAFKA_SSL_CAFILE"]).name
            assert items.get(ca_file, ca_file) == "ca.crt"
            assert ca_mount.get("readOnly") is True
            _, health_vol = _mount_for(dep, e["FLEET_HEALTH_FILE"])
            assert "emptyDir" in health_vol, f"{name}: the health file must be on a writable emptyDir"
            # read-only root filesystem: every place a library may write is an emptyDir
            for var in ("FLEET_CACHE_DIR", "HOME", "HF_HOME", "XDG_CACHE_HOME", "TRITON_CACHE_DIR"):
                assert "emptyDir" in _mount_for(dep, e[var] + "/x")[1], f"{name}: {var} is on the read-only root"
            assert "emptyDir" in _mount_for(dep, "/tmp/x")[1], name


def test_one_worker_deployment_per_configured_model(env: Env) -> None:
    workers = env.workers()
    assert sorted(workers) == sorted(env.settings.model_names)
    for m, dep in workers.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels["llm-fleet.io/model"] == m
        assert dep["metadata"]["name"] == f"llm-worker-{m}"
    router = env.router()
    assert 2 <= router["spec"]["replicas"] <= env.settings.kafka.intake_partitions, (
        "routers share one group on the intake topic: 2+ for availability, no more than its partitions"
    )


def test_model_directories_are_on_the_read_only_models_volume(env: Env) -> None:
    for m, dep in env.workers().items():
        ms = env.settings.model(m)
        for path in (ms.path, ms.draft_path):
            if path is None or path.startswith(("demo:", "gguf:")):  # built or converted into the cache volume
                continue
            mount, vol = _mount_for(dep, path)
            assert mount.get("readOnly") is True, f"{m}: {path} must be mounted read-only"
            pvc = vol["persistentVolumeClaim"]["claimName"]
            assert env.get("PersistentVolumeClaim", pvc)["spec"]["accessModes"] == ["ReadOnlyMany"]


# -- pods -------------------------------------------------------------------------
def test_probes_are_http_on_the_metrics_port(env: Env) -> None:
    """Issue 25: httpGet on /livez and /readyz (answered by a thread of the process), not an exec probe that
    starts a Python process (about 0.25 s of CPU) each time."""
    for dep in env.of("Deployment"):
        name, c = dep["metadata"]["name"], _container(dep)
        s = load_settings(env.toml_path, env=env.container_env(dep))
        assert s.metrics.enabled, f"{name}: metrics (and the probes' endpoints) must be on"
        (port,) = [p for p in c["ports"] if p["name"] == "metrics"]
        assert port["containerPort"] == s.metrics.port, name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            assert get["port"] in ("metrics", s.metrics.port), f"{name} {probe}"
            assert get["path"] == ("/readyz" if probe == "readinessProbe" else "/livez"), f"{name} {probe}"
            assert "exec" not in c[probe]
        # the status loop beats every status interval: the ages the probes allow tolerate a few missed beats
        assert s.metrics.ready_max_age_s >= 3 * s.latency.status_interval_ms / 1000, name
        assert s.metrics.live_max_age_s >= s.metrics.ready_max_age_s, name
        window = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
        if _container(dep)["args"][0] == "worker":
            assert window >= 600, f"{name}: loading and quantizing a model takes minutes"
        assert s.health_file, f"{name}: the health file stays (fleet health --file, by hand)"


def test_sigterm_drain_fits_the_grace_period_and_rollouts_go_one_pod_at_a_time(env: Env) -> None:
    drain = _drain_grace_s()
    for dep in env.of("Deployment"):
        name, pod, c = dep["metadata"]["name"], _pod(dep), _container(dep)
        assert pod["terminationGracePeriodSeconds"] > drain, f"{name}: SIGTERM drains for up to {drain} s"
        # no preStop: SIGTERM drains by itself, and a preStop would spend the grace period before it
        assert "preStop" not in c.get("lifecycle", {}), name
        strategy = dep["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}, name
        assert dep["spec"].get("minReadySeconds", 0) >= 10, f"{name}: let the rebalance settle between pods"


def test_pods_run_non_root_on_a_read_only_root(env: Env) -> None:
    for dep in env.of("Deployment"):
        name, pod, c = dep["metadata"]["name"], _pod(dep), _container(dep)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert env.get("ServiceAccount", pod["serviceAccountName"])["automountServiceAccountToken"] is False
        for m in c["volumeMounts"]:
            (vol,) = [v for v in pod["volumes"] if v["name"] == m["name"]]
            if "emptyDir" not in vol:
                assert m.get("readOnly") is True, f"{name}: {m['mountPath']} should be read-only"


def test_resources_and_gpu_placement_match_the_model_device(env: Env) -> None:
    for dep in env.of("Deployment"):
        name, pod, c = dep["metadata"]["name"], _pod(dep), _container(dep)
        req, lim = c["resources"]["requests"], c["resources"]["limits"]
        assert {"cpu", "memory"} <= set(req), name
        assert _quantity(lim["memory"]) >= _quantity(req["memory"]), name
    for m, dep in env.workers().items():
        c, pod = _container(dep), _pod(dep)
        req, lim = c["resources"]["requests"], c["resources"]["limits"]
        device = env.settings.model(m).device
        gpu = "nvidia.com/gpu"
        if device == "cuda":
            assert req.get(gpu) == lim.get(gpu) == 1, f"{m}: device cuda needs one GPU (requests == limits)"
            assert any(t["key"] == gpu for t in pod.get("tolerations", [])), f"{m}: tolerate the GPU taint"
            assert pod.get("nodeSelector"), f"{m}: GPU workers select GPU nodes"
        else:
            assert gpu not in req and gpu not in lim, f"{m}: device {device!r} must not hold a GPU"
            assert device == "cpu", f"{m}: say cpu or cuda, not {device!r}: 'auto' hides a lost GPU"
        # The model's CPU math threads: the pod's CPU request less one core for the worker's Kafka loop.
        # 0 (auto) would count every core of the node: sched_getaffinity does not see the pod's CPU share.
        threads = env.settings.model(m).torch_threads
        expected = max(1, math.floor(_quantity(req["cpu"])) - 1)
        assert threads == expected, f"{m}: torch_threads {threads} for a CPU request of {req['cpu']}: {expected}"


def test_every_deployment_has_a_pdb_allowing_one_disruption(env: Env) -> None:
    pdbs = env.of("PodDisruptionBudget")
    for dep in env.of("Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        hits = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(hits) == 1, f"{dep['metadata']['name']}: {len(hits)} PDBs"
        assert hits[0]["spec"]["maxUnavailable"] == 1, "evictions one pod (one rebalance) at a time"
        assert "minAvailable" not in hits[0]["spec"], "maxUnavailable works for any replica count KEDA picks"
    assert len(pdbs) == len(env.of("Deployment"))


def test_only_the_metrics_port_takes_ingress(env: Env) -> None:
    (np,) = env.of("NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = np["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    for dep in env.of("Deployment"):
        assert np["spec"]["podSelector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert [p["name"] for p in _container(dep).get("ports", [])] == ["metrics"], "nothing else listens"


# -- KEDA -------------------------------------------------------------------------
def test_keda_scales_each_worker_group_on_its_lag(env: Env) -> None:
    t = env.topics
    scaled = {so["spec"]["scaleTargetRef"]["name"]: so for so in env.of("ScaledObject")}
    assert len(scaled) == len(env.of("ScaledObject"))
    workers = env.workers()
    assert sorted(scaled) == sorted(d["metadata"]["name"] for d in workers.values()), "one ScaledObject per worker"
    for m, dep in workers.items():
        so = scaled[dep["metadata"]["name"]]
        spec = so["spec"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert "replicas" not in dep["spec"], f"{m}: KEDA owns the replica count; re-applying must not reset it"
        (trig,) = spec["triggers"]
        md = trig["metadata"]
        assert trig["type"] == "kafka"
        assert md["topic"] == t.model(m)
        assert md["consumerGroup"] == t.worker_group(m) == f"llm-worker-{m}"
        partitions = env.topic(t.model(m))["spec"]["partitions"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions, (
            f"{m}: workers beyond the {partitions} partitions of {t.model(m)} would sit idle"
        )
        assert md.get("allowIdleConsumers", "false") == "false"
        # lag counts requests in flight: a threshold under max_running scales out a worker that has room
        assert int(md["lagThreshold"]) >= env.settings.model(m).max_running, m
        assert md["offsetResetPolicy"] == "earliest", "as the workers' group consumer (fleet/kafka.py)"
        assert md["bootstrapServers"] == env.fleet_env["FLEET_KAFKA_BOOTSTRAP"]
        assert md["sasl"] == "scram_sha512" and md["tls"] == "enable"
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300, "minutes, against flapping"
        assert spec["cooldownPeriod"] >= 300
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] >= 30
        for pol in behavior["scaleDown"]["policies"]:
            assert pol["periodSeconds"] >= 60, "each membership change pauses the group"
        # credentials: the Describe-only KEDA user over TLS with the cluster CA
        auth = env.get("TriggerAuthentication", trig["authenticationRef"]["name"])
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert set(refs) == {"username", "password", "ca"}
        keda_user = env.user("keda")["metadata"]["name"]
        assert refs["password"]["name"] == keda_user and refs["password"]["key"] == "password"
        assert refs["ca"]["name"] == f"{env.strimzi_cluster}-cluster-ca-cert" and refs["ca"]["key"] == "ca.crt"
        secret = env.get("Secret", refs["username"]["name"])
        assert secret["stringData"][refs["username"]["key"]] == keda_user


# -- Kafka users ------------------------------------------------------------------
# Strimzi 0.49 introduced `kafka.strimzi.io/v1` (and moved the User and Topic Operators to it); 1.0 serves
# nothing else. The manifests say so (kafka-users.yaml, kafka-topics.yaml, README) and use it.
STRIMZI_API = "kafka.strimzi.io/v1"
STRIMZI_SINCE = "0.49"


def _expected_acls(env: Env) -> dict[str, set[ACL]]:
    """KafkaUser (without the topic prefix) -> the ACLs it needs, each derived from what uses it:
    the router and each model's workers from fleet/topic_access.py for the settings the manifests configure
    (the rendered fleet.toml and fleet-env); the calling-service and tenant templates from the same module
    (fleet/client.py, and a producer of tenant `example`); KEDA from the ScaledObjects that use its user."""
    s = env.settings
    out = {name: ta.acls(grants) for name, grants in ta.services(s).items()}
    out["client"] = ta.acls(ta.client(s))
    # the template, and a copy of it per configured tenant whose producers Kafka authenticates (optional: a
    # tenant may come in through the shared intake with an API key)
    out["tenant-example"] = ta.acls(ta.tenant_producer(s, "example"))
    for user in env.of("KafkaUser"):
        name = user["metadata"]["name"].removeprefix(f"{s.kafka.topic_prefix}-tenant-")
        if user["metadata"]["labels"].get("app.kubernetes.io/component") == "tenant" and s.tenant(name):
            out[f"tenant-{name}"] = ta.acls(ta.tenant_producer(s, name))
    keda: set[ACL] = set()
    for so in env.of("ScaledObject"):
        for trig in so["spec"]["triggers"]:
            if trig["type"] == "kafka":  # the scaler's lag: end offsets and the group's commits, nothing else
                keda |= {("topic", "literal", trig["metadata"]["topic"], "Describe")}
                keda |= {("group", "literal", trig["metadata"]["consumerGroup"], "Describe")}
    out["keda"] = keda
    return out


def _granted(user: dict[str, Any]) -> set[ACL]:
    out: set[ACL] = set()
    for acl in user["spec"]["authorization"]["acls"]:
        r = acl["resource"]
        assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*"
        assert "operation" not in acl, "v1 has only `operations` (a list)"
        assert acl["operations"], acl
        for op in acl["operations"]:
            out.add((r["type"], r.get("patternType", "literal"), r["name"], op))
    return out


def test_strimzi_resources_use_the_v1_api_and_state_the_supported_range(env: Env) -> None:
    strimzi = [d for d in env.docs if d["apiVersion"].startswith("kafka.strimzi.io/")]
    assert {d["kind"] for d in strimzi} == {"KafkaTopic", "KafkaUser"}
    for d in strimzi:
        assert d["apiVersion"] == STRIMZI_API, f"{d['kind']} {d['metadata']['name']}: {d['apiVersion']}"
        assert d.get("spec"), "v1 requires `spec`"
    for path in (K8S / "README.md", K8S / "base" / "kafka-users.yaml", K8S / "base" / "kafka-topics.yaml"):
        text = path.read_text()
        assert f"Strimzi {STRIMZI_SINCE} or newer" in text, f"{path.name} states the supported Strimzi range"
        assert "kafka.strimzi.io/v1beta" not in text and "kafka.strimzi.io/v1alpha" not in text, path.name


def test_kafka_users_grant_exactly_what_the_code_uses(env: Env) -> None:
    expected = _expected_acls(env)
    prefix = env.settings.kafka.topic_prefix
    users = {u["metadata"]["name"] for u in env.of("KafkaUser")}
    assert users == {f"{prefix}-{name}" for name in expected}, "one KafkaUser per component, per model's workers"
    for component, needed in expected.items():
        user = env.user(component)
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["spec"]["authorization"]["type"] == "simple"
        granted = _granted(user)
        missing, extra = sorted(needed - granted), sorted(granted - needed)
        assert not missing, f"{user['metadata']['name']} lacks {missing} (fleet/topic_access.py says why)"
        assert not extra, f"{user['metadata']['name']} has what nothing uses: {extra}"
        for rtype, _, name, op in granted:
            assert rtype in ("topic", "group") and name != "*" and op not in ("All", "Create", "Delete", "Alter")


def test_each_users_acls_name_only_topics_that_exist(env: Env) -> None:
    topics = {d["spec"]["topicName"] for d in env.of("KafkaTopic")}
    prefix = env.settings.kafka.topic_prefix
    # the router's rights on every tenant's intake: tenants are added while the fleet runs, each with its topic
    tenant_intake = ("topic", "prefix", ta.tenant_intake_prefix(env.settings))
    for user in env.of("KafkaUser"):
        tenant = user["metadata"]["name"].removeprefix(f"{prefix}-tenant-")
        if user["metadata"]["labels"]["app.kubernetes.io/component"] == "tenant" and not env.settings.tenant(tenant):
            continue  # the template, for a tenant not configured here: its topic comes with the tenant
        for rtype, pattern, name, _ in _granted(user):
            if rtype == "topic" and (rtype, pattern, name) != tenant_intake:
                hit = name in topics if pattern == "literal" else any(t.startswith(name) for t in topics)
                assert hit, f"{user['metadata']['name']}: {pattern} {name!r} matches no KafkaTopic"


def test_the_routers_health_feed_can_read_the_dlq(env: Env) -> None:
    """Issue 22: without Read on the DLQ the health feed's consumer never starts and no breaker opens."""
    granted = _granted(env.user("router"))
    assert ("topic", "literal", env.topics.dlq, "Read") in granted
    assert ("topic", "literal", env.topics.usage, "Read") in granted


def test_a_tenant_added_later_needs_only_its_kafka_topic(env: Env) -> None:
    """Tenants are added while the fleet runs: the router already reads and writes every tenant's intake (a
    prefix ACL) and the counters' snapshots, whether or not fleet.toml lists any tenant."""
    t = env.topics
    router = {
        ta.Access(ta.Resource(r), name, ta.Op(op), ta.Pattern(pattern))
        for r, pattern, name, op in _granted(env.user("router"))
    }
    for op in (ta.Op.READ, ta.Op.WRITE):
        assert ta.covered(router, ta.Resource.TOPIC, t.tenant_intake("added-later"), op)
        assert ta.covered(router, ta.Resource.TOPIC, t.tenant_state, op)
    assert env.topic(t.tenant_state), "the snapshots' topic is shipped too"


# -- monitoring --------------------------------------------------------------------
def test_alerts_use_only_kafka_exporter_metrics_on_the_fleets_names() -> None:
    settings = load_settings(ENVS["base"] / "fleet.toml", env={})
    t = settings.kafka.topics
    topics = {t.requests, t.dlq, t.control, t.status, t.usage, *(t.model(m) for m in settings.model_names)}
    groups = {t.router_group, *(t.worker_group(m) for m in settings.model_names)}
    docs = build(K8S / "monitoring")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule" and d["metadata"]["name"] == "llm-fleet-kafka"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert exprs
    for expr in exprs:
        # these rules read the Kafka Exporter's series only
        metrics = set(re.findall(r"\b([a-z_:]+)\{", expr))
        exporter = {"kafka_consumergroup_lag", "kafka_consumergroup_members", "kafka_topic_partition_current_offset"}
        assert metrics and metrics <= exporter, metrics
        for op, value in re.findall(r'consumergroup(=~?)"([^"]+)"', expr):
            hits = {g for g in groups if (re.fullmatch(value, g) if op == "=~" else g == value)}
            assert hits, f"{value!r} names no consumer group of the fleet"
        for value in re.findall(r'topic="([^"]+)"', expr):
            assert value in topics, value


def test_the_pod_monitor_scrapes_the_pods_metrics_port(env: Env) -> None:
    (pm,) = [d for d in build(K8S / "monitoring") if d["kind"] == "PodMonitor"]
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for dep in env.of("Deployment"):
        assert pm["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert endpoint["port"] in [p["name"] for p in _container(dep)["ports"]]


# -- images -----------------------------------------------------------------------
@pytest.mark.parametrize("name", OVERLAYS)
def test_overlays_pin_one_image_for_every_container(name: str) -> None:
    images = {_container(d)["image"] for d in build(ENVS[name]) if d["kind"] == "Deployment"}
    assert len(images) == 1, images
    (image,) = images
    assert "@sha256:" in image or re.search(r":[\w][\w.-]*$", image.rsplit("/", 1)[-1]), image
    assert not image.endswith(":latest")


def test_dockerfile_installs_torch_first_and_runs_fleet_as_non_root() -> None:
    text = (K8S / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    torch_at = next(i for i, ln in enumerate(text.splitlines()) if re.search(r"pip install .*torch==", ln))
    project_at = next(i for i, ln in enumerate(text.splitlines()) if re.search(r"pip install .*/src\s*(\\|$)", ln))
    assert torch_at < project_at, "torch must be installed (pinned) before the project"
    assert "-c /src/constraints.txt" in text.splitlines()[project_at], "the versions the test suite passed on"
    pinned = re.search(r"ARG TORCH_VERSION=([\d.]+)", text)
    makefile_pin = re.search(r"pip install .*torch==([\d.]+)", (ROOT / "Makefile").read_text())
    assert pinned and makefile_pin and pinned[1] == makefile_pin[1], "the torch the Makefile pins"
    uid = [ln for ln in lines if ln.startswith("USER ")][-1].split()[1].split(":")[0]
    assert uid.isdigit() and uid != "0", "a numeric non-root USER (runAsNonRoot can verify it)"
    assert 'ENTRYPOINT ["fleet"]' in lines
    for dep in build(ENVS["base"]):
        if dep["kind"] == "Deployment":
            assert str(_pod(dep)["securityContext"]["runAsUser"]) == uid
    ignore = [
        ln.strip()
        for ln in (K8S / "Dockerfile.dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert ignore[0] == "*", "whitelist the build context"
    assert "!constraints.txt" in ignore and "COPY pyproject.toml README.md constraints.txt /src/" in text
    for pkg in ("contracts", "router", "worker", "fleet"):
        assert f"COPY {pkg} /src/{pkg}" in text and f"!{pkg}/" in ignore
