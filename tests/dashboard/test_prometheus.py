"""/metrics scraped by a real Prometheus (Debian's package) from a running `spotbot serve`, with the shipped example
configuration and alert rules; the rules checked and unit-tested by promtool."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import requests
from conftest import ROOT, cli_env, register_echo, submit, upload, wait_for

from framework.endpoints.process import free_port

from api.conftest import TOKEN

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def promtool(tool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tool, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_the_example_rules_pass_promtool(prometheus_tools):
    _, tool = prometheus_tools
    checked = promtool(tool, "check", "rules", str(RULES))
    assert checked.returncode == 0 and "SUCCESS: 4 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool(tool, "test", "rules", str(RULES.with_name("alerts.test.yml")))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_prometheus_scrapes_the_counts_of_a_job(prometheus_tools, server, settings, store, storage, bucket, tmp_path):
    prometheus, tool = prometheus_tools
    # Given a job of 4 good and 3 failing files, and the API serving /metrics behind its token
    register_echo(settings)
    upload(storage, bucket, {**{f"in/ok{i}.txt": "hello" for i in range(4)}, **{f"in/bad{i}.txt": "RAISE" for i in range(3)}})
    code, job, stderr = submit(settings, bucket, env=cli_env(settings, SPOTBOT_MAX_ATTEMPTS="1"))
    assert code == 3, stderr
    api = server(SPOTBOT_METRICS_CACHE_SECONDS="1")
    text = api.get("/metrics").text
    linted = promtool(tool, "check", "metrics", stdin=text)
    assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr  # Prometheus' naming rules

    # When Prometheus scrapes it with the shipped example configuration (its token from a file, its alert rules)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    config = (config.replace("/etc/prometheus/spotbot-token", str(token))
              .replace('"127.0.0.1:8080"', f'"{api.url.removeprefix("http://")}"')
              .replace("scrape_interval: 15s", "scrape_interval: 1s").replace("evaluation_interval: 15s", "evaluation_interval: 1s")
              .replace("  - alerts.yml", f"  - {RULES}"))
    (tmp_path / "prometheus.yml").write_text(config)
    assert promtool(tool, "check", "config", str(tmp_path / "prometheus.yml")).returncode == 0
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    process = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        def query(promql: str) -> list:
            answer = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10).json()
            assert answer["status"] == "success", answer
            return answer["data"]["result"]

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(Path(log.name).read_text(errors="replace"))
            try:
                return requests.get(f"{base}/-/ready", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, 60, "Prometheus to be ready")
        # Then a PromQL query answers the job's counts, per status and per bot
        job_id = job["job_id"]
        errors = wait_for(lambda: query(f'spotbot_job_files{{job_id="{job_id}",status="ERROR"}}'), 60,
                          "Prometheus to have scraped the job's counts")
        assert errors[0]["value"][1] == "3" and errors[0]["metric"]["bot"] == "echo"
        assert query(f'sum(spotbot_job_files{{job_id="{job_id}"}})')[0]["value"][1] == "7"
        assert query('spotbot_bot_files_completed_total{bot="echo"}')[0]["value"][1] == "4"
        assert query('spotbot_file_processing_seconds_count{bot="echo"}')[0]["value"][1] == "4"
        assert query('up{job="spotbot"}')[0]["value"][1] == "1"
        # and the example rules load and evaluate on real series without error
        def rules_evaluated():
            groups = requests.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return rules if len(rules) == 4 and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules) \
                else None

        rules = wait_for(rules_evaluated, 30, "the alert rules to be evaluated")
        assert {rule["name"] for rule in rules} == {"SpotbotJobNoLiveWorkers", "SpotbotJobStalled", "SpotbotErrorRateHigh",
                                                    "SpotbotEndpointDown"}
        assert all(rule["health"] == "ok" for rule in rules), rules
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
