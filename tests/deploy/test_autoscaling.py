"""The autoscaling signal: the prometheus-adapter rule (deploy/autoscaling/prometheus-adapter-values.yaml) reads
series that the real Triton exports, and its query, evaluated by Prometheus' own promtool on synthetic counters,
gives the average queue time per request of each pod (0 for an idle pod, other models ignored)."""
import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from deploy import contract

ADAPTER_VALUES = contract.DEPLOY / "autoscaling" / "prometheus-adapter-values.yaml"


@pytest.fixture(scope="module")
def rule():
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    return rule


def test_adapter_rule_reads_series_the_real_triton_exports(rule, triton_cpu):
    series = set(re.findall(r"\b(nv_\w+)\{", rule["seriesQuery"] + rule["metricsQuery"]))
    assert series == {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    assert rule["metricsQuery"].count(f'model="{contract.MODEL_NAME}"') == 2
    url = f"http://127.0.0.1:{triton_cpu.ports['metrics']}/metrics"
    exported = urllib.request.urlopen(url, timeout=10).read().decode()
    for name in series:
        assert re.search(rf'^{name}\{{[^}}]*model="{contract.MODEL_NAME}"', exported, re.M), name
        assert f"# TYPE {name} counter" in exported  # rate() needs counters


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed: `make setup` installs it (Debian package prometheus, as root)")
def test_adapter_query_gives_queue_time_per_request_per_pod(rule, tmp_path):
    pods = ("adnet-busy", "adnet-idle")
    # What prometheus-adapter substitutes when the HPA asks for the pods of the Deployment.
    expr = (rule["metricsQuery"].replace("<<.LabelMatchers>>", f'namespace="ml",pod=~"{"|".join(pods)}"')
            .replace("<<.GroupBy>>", "pod"))
    name = rule["name"]["as"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(
        {"groups": [{"name": "adapter", "rules": [{"record": name, "expr": expr}]}]}))

    def series(metric, pod, values, model=contract.MODEL_NAME):
        return {"series": f'{metric}{{model="{model}",version="1",namespace="ml",pod="{pod}"}}', "values": values}

    # Busy pod: 15 requests and 180 ms of queueing every 15 s -> 12 ms (12000 µs) per request. Another model on the
    # same pod queues a lot and must not count; the idle pod reads 0, not NaN.
    inputs = [series("nv_inference_queue_duration_us", pods[0], "0+180000x40"),
              series("nv_inference_request_success", pods[0], "0+15x40"),
              series("nv_inference_queue_duration_us", pods[0], "0+9000000x40", model="other"),
              series("nv_inference_request_success", pods[0], "0+1x40", model="other"),
              series("nv_inference_queue_duration_us", pods[1], "0x40"),
              series("nv_inference_request_success", pods[1], "0x40")]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": inputs, "promql_expr_test": [{
            "expr": name, "eval_time": "5m",
            "exp_samples": [{"labels": f'{name}{{pod="{pods[0]}"}}', "value": 12000},
                            {"labels": f'{name}{{pod="{pods[1]}"}}', "value": 0}]}]}]}))
    result = subprocess.run(["promtool", "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
