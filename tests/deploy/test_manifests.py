"""The Kubernetes manifests: every overlay renders with the real `kubectl kustomize` and passes the real
`kubernetes-validate --strict` (Kubernetes 1.30, no warning); the optional ServiceMonitor component is checked apart;
every field that carries a contract value (images, ports, model name, tensors, limits, the manager's interface)
matches the project's one definition of it (deploy/contract.py gathers them)."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from client import contract as client_contract
from deploy import check, contract
from deploy.generate import stale_files

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None,
                                reason="kubectl not found: install kubectl >= 1.27 (renders kustomize offline, no "
                                       "cluster needed); see deploy/README.md")

ADAPTER_VALUES = contract.DEPLOY / "autoscaling" / "prometheus-adapter-values.yaml"
CPU_DOCKERFILE = contract.DEPLOY / "docker" / "cpu.Dockerfile"
MODEL_DOCKERFILE = contract.DEPLOY / "docker" / "model.Dockerfile"


@pytest.fixture(scope="module")
def rendered():
    return {name: check.render(path) for name, path in check.OVERLAYS.items()}


@pytest.fixture(scope="module")
def manifests(rendered):
    """overlay -> {(kind, name): resource}"""
    return {name: {(r["kind"], r["metadata"]["name"]): r for r in check.resources(text)}
            for name, text in rendered.items()}


def pod_spec(resources):
    return resources[("Deployment", "adnet")]["spec"]["template"]["spec"]


def server_container(resources):
    (container,) = pod_spec(resources)["containers"]
    assert container["name"] == "triton"
    return container


def flags(container):
    """--name=value arguments as a dict."""
    return dict(arg[2:].split("=", 1) for arg in container["args"] if arg.startswith("--") and "=" in arg)


def service(resources, name):
    return resources[("Service", name)]


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("version", [check.MIN_KUBERNETES, "1.37.0"])
@pytest.mark.parametrize("overlay", sorted(check.OVERLAYS))
def test_overlay_passes_strict_validation_without_warnings(rendered, overlay, version):
    code, lines = check.validate(rendered[overlay], version)
    assert code == 0 and lines == [], lines


def test_strict_validation_rejects_an_unknown_field(manifests):
    deployment = json.loads(json.dumps(manifests["gpu"][("Deployment", "adnet")]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {"port": 1}
    code, lines = check.validate(yaml.safe_dump(deployment))
    assert code != 0 and any("httpGett" in line for line in lines), lines


@pytest.mark.parametrize("overlay", sorted(check.OVERLAYS))
def test_service_monitor_component_is_validated_apart_and_scrapes_the_metrics_port(manifests, overlay):
    text = check.render_with_components(check.OVERLAYS[overlay], [check.SERVICE_MONITOR])
    code, lines = check.validate(text)
    assert code == 0
    assert len(lines) == 1 and "Couldn't find schema for kind ServiceMonitor" in lines[0], lines
    (monitor,) = [r for r in check.resources(text) if r["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [r for r in check.resources(text) if r["kind"] == "Service"]
    scraped = [s for s in services if labels_match(selector, s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in scraped] == ["adnet"]  # not the headless one too: no double scrape
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in scraped[0]["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["targetPort"] == "metrics" and endpoint["path"] == "/metrics"
    core = {k for k in manifests[overlay]}
    assert {(r["kind"], r["metadata"]["name"]) for r in check.resources(text)} - core == {("ServiceMonitor", "adnet")}


@pytest.mark.parametrize("example", sorted(check.EXAMPLES))
def test_example_user_kustomization_renders_and_validates(example):
    assert check.problems_of(example, check.render(check.EXAMPLES[example]), check.MIN_KUBERNETES,
                             crds_expected=1) == []


def test_generated_files_are_current():
    assert stale_files() == [], "run `python -m deploy.generate`"


def test_images_come_from_the_contract(manifests):
    assert server_container(manifests["gpu"])["image"] == contract.NGC_TRITON_IMAGE
    cpu_image = server_container(manifests["cpu"])["image"]
    assert cpu_image.rsplit("/", 1)[-1] == f"{contract.CPU_IMAGE_NAME}:{contract.CPU_IMAGE_TAG}"


@pytest.mark.parametrize("overlay", sorted(check.OVERLAYS))
def test_ports_come_from_the_contract(manifests, overlay):
    resources = manifests[overlay]
    container = server_container(resources)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    expected = contract.PORTS_WITH_HEALTH if overlay == "cpu" else contract.PORTS
    assert ports == expected
    args = flags(container)
    for name, number in expected.items():
        assert int(args[f"{name}-port"]) == number
    for name in ("adnet", "adnet-headless"):
        for port in service(resources, name)["spec"]["ports"]:
            assert port["targetPort"] == port["name"] and port["port"] == ports[port["name"]]
    assert {p["name"] for p in service(resources, "adnet")["spec"]["ports"]} == set(contract.PORTS)
    assert service(resources, "adnet-headless")["spec"]["clusterIP"] == "None"
    pod_labels = resources[("Deployment", "adnet")]["spec"]["template"]["metadata"]["labels"]
    for name in ("adnet", "adnet-headless"):
        assert labels_match(service(resources, name)["spec"]["selector"], pod_labels)


def test_gpu_probes_see_a_model_that_cannot_serve(manifests):
    container = server_container(manifests["gpu"])
    command = container["readinessProbe"]["exec"]["command"]
    assert command[0] == "curl" and "--fail" in command
    assert command[-1] == f"http://127.0.0.1:{contract.PORTS['http']}/v2/models/{contract.MODEL_NAME}/infer"
    (data,) = [arg for arg in command if arg.startswith("@")]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert data == f"@{mounts['canary']}/canary.json"
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert flags(container)["strict-readiness"] == "true"


def test_gpu_canary_is_the_smallest_valid_request_of_the_gpu_config(manifests):
    from export.profiles import DEFAULT_PROFILE

    (configmap,) = [r for (kind, _), r in manifests["gpu"].items() if kind == "ConfigMap"]
    canary = json.loads(configmap["data"]["canary.json"])
    assert configmap["data"]["canary.json"] == contract.canary_json()
    config = text_format.Parse((contract.ROOT / "model_repository" / "gpu" / contract.MODEL_NAME /
                                "config.pbtxt").read_text(), mc.ModelConfig())
    assert [i["name"] for i in canary["inputs"]] == [i.name for i in config.input]
    assert [o["name"] for o in canary["outputs"]] == [o.name for o in config.output]
    # Triton's highest priority, a level of the config where it has levels.
    assert canary["parameters"]["priority"] == 1 <= max(config.dynamic_batching.priority_levels, 1)
    for tensor, declared in zip(canary["inputs"], config.input):
        assert "TYPE_" + tensor["datatype"] == mc.DataType.Name(declared.data_type)
        batch, *dims = tensor["shape"]
        assert 1 <= batch <= config.max_batch_size
        assert all(d == -1 or d == s for d, s in zip(declared.dims, dims)) and len(dims) == len(declared.dims)
        assert len(tensor["data"]) == np.prod(tensor["shape"])
    ldr = np.array(canary["inputs"][0]["data"])
    assert ldr.min() >= 0 and ldr.max() <= 255 and ldr.std() > 0  # a real image, not a constant
    h, w = canary["inputs"][0]["shape"][2:4]
    assert h == w == client_contract.MIN_SIDE
    assert DEFAULT_PROFILE.min.height <= h and DEFAULT_PROFILE.min.width <= w
    assert DEFAULT_PROFILE.min.batch <= canary["inputs"][0]["shape"][0] <= DEFAULT_PROFILE.max.batch


def test_gpu_plugin_and_repository_come_from_the_model_image(manifests):
    spec = pod_spec(manifests["gpu"])
    container = server_container(manifests["gpu"])
    args = flags(container)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    plugin_dir, plugin_file = args["backend-config"].removeprefix("tensorrt,plugins=").rsplit("/", 1)
    assert plugin_file == contract.PLUGIN_FILE
    for path, sub in ((args["model-repository"], "models"), (plugin_dir, "plugins")):
        assert mounts[path]["name"] == "repository" and mounts[path]["subPath"] == sub and mounts[path]["readOnly"]
    (init,) = spec["initContainers"]
    (init_mount,) = [m["mountPath"] for m in init["volumeMounts"] if m["name"] == "repository"]
    assert init["command"] == ["cp", "-R", "/artifacts/models", "/artifacts/plugins", init_mount + "/"]
    copies = dict(line.split()[1:3] for line in MODEL_DOCKERFILE.read_text().splitlines() if line.startswith("COPY "))
    assert copies["build/libadnet_plugins.so"] == f"/artifacts/plugins/{contract.PLUGIN_FILE}"
    model = f"model_repository/gpu/{contract.MODEL_NAME}"
    assert copies[f"{model}/config.pbtxt"] == f"/artifacts/models/{contract.MODEL_NAME}/config.pbtxt"
    assert copies[f"{model}/1/model.plan"] == f"/artifacts/models/{contract.MODEL_NAME}/1/model.plan"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_gpu_command_line_is_the_one_of_docker_command(manifests):
    from model_repository.server import docker_command

    args = server_container(manifests["gpu"])["args"]
    assert args == contract.gpu_triton_args()
    for word in docker_command(admin_token="$(ADMIN_TOKEN)").split(" tritonserver ", 1)[1].split():
        assert word in args


def test_restricted_endpoints_take_the_token_from_a_secret(manifests):
    gpu = server_container(manifests["gpu"])
    (env,) = [e for e in gpu["env"] if e["name"] == "ADMIN_TOKEN"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "adnet-admin-token", "key": "token"}
    rule = f"{contract.RESTRICTED}:{contract.ADMIN_HEADER}=$(ADMIN_TOKEN)"
    assert flags(gpu)["grpc-restricted-protocol"] == flags(gpu)["http-restricted-api"] == rule
    cpu = server_container(manifests["cpu"])
    assert "env" not in cpu  # the manager reads the token from the mounted Secret, not from its environment
    (volume,) = [v for v in pod_spec(manifests["cpu"])["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "adnet-admin-token"
    (mount,) = [m for m in cpu["volumeMounts"] if m["name"] == volume["name"]]
    folder, key = contract.ADMIN_TOKEN_FILE.rsplit("/", 1)
    assert mount["mountPath"] == folder and key == "token"
    assert flags(cpu)["admin-token-file"] == contract.ADMIN_TOKEN_FILE


def test_cpu_overlay_runs_the_manager_of_the_contract(manifests):
    container = server_container(manifests["cpu"])
    assert container["command"] == ["python", "-m", contract.MANAGER_MODULE]
    assert container["args"] == contract.cpu_manager_args()
    args = flags(container)
    assert args["host"] == "0.0.0.0" and args["onnx"] == contract.CPU_ONNX_IN_IMAGE
    for probe, path in (("startupProbe", contract.READY_PATH), ("readinessProbe", contract.READY_PATH),
                        ("livenessProbe", contract.LIVE_PATH)):
        assert container[probe]["httpGet"] == {"path": path, "port": "health"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert f"{contract.IMAGE_PROJECT_ROOT}/{contract.MANAGER_STAGE}" in mounts  # the manager writes there


def test_cpu_manager_accepts_the_overlay_arguments(manifests):
    result = subprocess.run([sys.executable, "-m", contract.MANAGER_MODULE, "--help"], capture_output=True,
                            text=True, cwd=contract.ROOT)
    assert result.returncode == 0, result.stderr
    used = {arg.split("=", 1)[0] for arg in server_container(manifests["cpu"])["args"]}
    missing = sorted(flag for flag in used if flag not in result.stdout)
    if missing and set(missing) <= {"--health-port", "--admin-token-file"}:
        pytest.skip(f"model_repository.server has no {' '.join(missing)} yet: the serving work adds the manager's "
                    "/ready and /live endpoint and its token file, which the cpu overlay uses")
    assert missing == []


@pytest.mark.parametrize("overlay", sorted(check.OVERLAYS))
def test_pods_are_restricted_and_terminate_gracefully(manifests, overlay):
    spec = pod_spec(manifests[overlay])
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0 and pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "limits" in container["resources"] and "memory" in container["resources"]["limits"]
    container = server_container(manifests[overlay])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # model load time
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    exit_timeout = int(flags(container).get("exit-timeout-secs", 30))  # the manager's tritonserver uses 10 s
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + exit_timeout + 10


@pytest.mark.parametrize("overlay", sorted(check.OVERLAYS))
def test_memory_bounds(manifests, overlay):
    units = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30}

    def quantity(text):
        number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(text)).groups()
        return int(number) * units.get(unit, 1)

    spec = pod_spec(manifests[overlay])
    resources = server_container(manifests[overlay])["resources"]
    assert quantity(resources["limits"]["memory"]) >= quantity(resources["requests"]["memory"])
    (shm,) = [v for v in spec["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"]["medium"] == "Memory"
    # The python backend's shared memory must hold the largest batch the CPU model admits (in + out).
    assert quantity(shm["emptyDir"]["sizeLimit"]) >= contract.largest_batch_bytes()
    assert quantity(shm["emptyDir"]["sizeLimit"]) < quantity(resources["limits"]["memory"])


@pytest.mark.parametrize("overlay", sorted(check.OVERLAYS))
def test_autoscaler_and_disruption_budget_target_the_deployment(manifests, overlay):
    resources = manifests[overlay]
    hpa = resources[("HorizontalPodAutoscaler", "adnet")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "adnet"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert "replicas" not in resources[("Deployment", "adnet")]["spec"]  # the HPA owns it
    pod_labels = resources[("Deployment", "adnet")]["spec"]["template"]["metadata"]["labels"]
    pdb = resources[("PodDisruptionBudget", "adnet")]
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels) and pdb["spec"]["maxUnavailable"] == 1


def test_cpu_dockerfile_installs_the_serving_pins_of_requirements_txt(manifests):
    dockerfile = CPU_DOCKERFILE.read_text()
    (pattern,) = re.findall(r"grep -E '([^']+)'", dockerfile)
    lines = (contract.ROOT / "requirements.txt").read_text().splitlines()
    selected = [line.split("#")[0].strip() for line in lines if re.match(pattern, line)]
    names = re.match(r"\^\((.*)\)==", pattern).group(1).replace("\\[", "[").replace("\\]", "]").split("|")
    assert len(selected) == len(names)  # every listed package has exactly one exact pin
    assert all(re.fullmatch(r"[\w\-\[\]]+==[\w.]+", pin) for pin in selected), selected
    assert {"nvidia-pytriton==0.7.0", "onnxruntime==1.32.0", "numpy==1.26.4"} <= set(selected)
    assert "torch" not in pattern
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert base.startswith(f"python:{sys.version_info.major}.{sys.version_info.minor}.")
    copies = dict(line.split()[1:3] for line in dockerfile.splitlines() if line.startswith("COPY "))
    (workdir,) = re.findall(r"^WORKDIR (\S+)", dockerfile, re.M)
    assert workdir == contract.IMAGE_PROJECT_ROOT
    assert f"{workdir}/{copies['build/adnet.onnx']}" == contract.CPU_ONNX_IN_IMAGE
    assert {"client/", "model_repository/"} <= set(copies)
    (user,) = re.findall(r"^USER (\d+)", dockerfile, re.M)
    assert int(user) == pod_spec(manifests["cpu"])["securityContext"]["runAsUser"]
    (exposed,) = re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)
    assert sorted(map(int, exposed.split())) == sorted(contract.PORTS_WITH_HEALTH.values())


# Import names of the requirements.txt packages the CPU image leaves out (a new pin must be placed here or in the
# Dockerfile's list: the test below fails otherwise).
LEFT_OUT_OF_CPU_IMAGE = {"torch": "torch", "onnxscript": "onnxscript",
                         "onnxruntime-extensions": "onnxruntime_extensions", "onnx-graphsurgeon": "onnx_graphsurgeon",
                         "polygraphy": "polygraphy", "matplotlib": "matplotlib",
                         "tensorrt-rtx-cu13": "tensorrt_rtx", "kubernetes-validate": "kubernetes_validate",
                         "PyYAML": "yaml", "pytest": "pytest",
                         # the kernel report's SASS tools (`make kernel-report`), not Python modules the server imports
                         "nvidia-cuda-cuobjdump": "nvidia.cuda_cuobjdump", "nvidia-cuda-nvdisasm": "nvidia.cuda_nvdisasm"}


def test_cpu_image_code_imports_nothing_the_image_leaves_out():
    pattern = re.findall(r"grep -E '([^']+)'", CPU_DOCKERFILE.read_text())[0]
    pins = [line.split("#")[0].strip() for line in (contract.ROOT / "requirements.txt").read_text().splitlines()]
    pins = [p for p in pins if p]
    outside = {re.split(r"[\[=<>]", p)[0] for p in pins if not re.match(pattern, p)}
    assert outside == set(LEFT_OUT_OF_CPU_IMAGE), "place each new requirement in the CPU image or in the list"
    model_py = contract.ROOT / "model_repository" / "cpu" / contract.MODEL_NAME / "1" / "model.py"
    probe = f"""
import ast, importlib, importlib.abc, sys
blocked = {sorted(LEFT_OUT_OF_CPU_IMAGE.values())!r}
class LeftOut(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{{name}} is not in the CPU image (deploy/docker/cpu.Dockerfile)")
sys.meta_path.insert(0, LeftOut())
import {contract.MANAGER_MODULE}
for node in ast.walk(ast.parse(open({str(model_py)!r}).read())):
    names = [a.name for a in node.names] if isinstance(node, ast.Import) else \\
        [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
    for name in names:
        if name != "triton_python_backend_utils":  # the python backend provides it
            importlib.import_module(name)
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=contract.ROOT)
    assert result.returncode == 0, result.stderr
