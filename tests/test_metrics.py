"""`[metrics]`: a real daemon's Prometheus endpoint and textfile after a real attack (hosts.deny
on a temp file as the backend), and the Grafana dashboard shipped in packaging/ queries only
series that endpoint exports."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.daemon_process import (ATTACKER, ArguardProcess, arguard, failed_password,
                                  hosts_deny_config, status, syslog_line, wait_for)

DASHBOARD = REPO / "packaging" / "grafana-dashboard.json"
FRIEND = "192.0.2.10"          # on the white list of hosts_deny_config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) → value, read with prometheus_client's own parser."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """A daemon with metrics on, after: a password brute force (5763: host-deny adds, the
    broken command fails), a non-existent-user brute force from the same address (5712:
    host-deny extends), one from a white-listed address (skipped), an ambiguous line, a
    line no decoder knows, one reload applied and one refused."""
    directory = tmp_path_factory.mktemp("metrics")
    log = directory / "auth.log"
    log.write_text("")
    port = free_port()
    config = hosts_deny_config(directory, f"""
        [[source]]
        path = "auth.log"

        [[command]]
        name = "broken-deny"
        action = "hosts-deny"
        path = "no-such-directory/hosts.deny"
        timeout_allowed = true

        [metrics]
        listen = "127.0.0.1:{port}"
        textfile = "arguard.prom"
        interval = 1
        """, responses="""
        [[active_response]]
        command = "host-deny"
        rules_id = [5712, 5763]
        timeout = "10m"
        repeated_offenders = [30, 60]

        [[active_response]]
        command = "broken-deny"
        rules_id = [5763]
        timeout = "10m"
        """)
    process = ArguardProcess(directory, config)
    try:
        process.wait_notified("READY=1")
        forged = ("Failed password for invalid user x from 198.51.100.7 port 1 ssh2: y from "
                  f"{ATTACKER} port 22 ssh2: z")
        attack = [failed_password(ATTACKER, 40000 + i) for i in range(8)]
        attack += [syslog_line(f"Invalid user u{i} from {ATTACKER} port {41000 + i}")
                   for i in range(8)]
        attack += [failed_password(FRIEND, 42000 + i) for i in range(8)]
        attack += [syslog_line(forged), "no header, no decoder: just text\n"]
        with open(log, "a") as out:
            out.write("".join(attack))
        wait_for(lambda: status(config)["lines"] >= len(attack), what="the attack read")
        wait_for(lambda: status(config)["responses"].get("host-deny", {}).get("extend"),
                 what="the block extended")
        assert arguard(config, "reload").returncode == 0
        text = config.read_text()
        config.write_text(text + "\n[[active_response]]\ncommand = 'host-deny'\n"
                                 "rules_id = [424242]\n")
        assert arguard(config, "reload").returncode == 1
        config.write_text(text)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            scraped = reply.read().decode()
        wait_for(lambda: "arguard_reloads_total{result=\"refused\"} 1.0" in
                 (directory / "arguard.prom").read_text(), what="the textfile written")
        yield {"text": scraped, "port": port, "directory": directory, "config": config,
               "process": process}
    finally:
        process.close()


def test_the_endpoint_counts_a_real_attack(attacked):
    scraped = samples(attacked["text"])
    source = {"source": str(attacked["directory"] / "auth.log"), "kind": "file"}
    assert value(scraped, "arguard_lines_read_total", **source) == 26
    assert value(scraped, "arguard_lines_undecoded_total", **source) == 1
    assert value(scraped, "arguard_lines_ambiguous_total", **source) == 1
    assert value(scraped, "arguard_alerts_total", rule="5763", level="10") == 2
    assert value(scraped, "arguard_alerts_total", rule="5712", level="10") == 1
    responses = "arguard_responses_total"
    assert value(scraped, responses, command="host-deny", outcome="add", reason="") == 1
    assert value(scraped, responses, command="host-deny", outcome="extend", reason="") == 1
    assert value(scraped, responses, command="host-deny", outcome="skip",
                 reason="white_list") == 1
    assert value(scraped, responses, command="broken-deny", outcome="skip",
                 reason="white_list") == 1
    assert value(scraped, responses, command="broken-deny", outcome="fail", reason="") >= 1
    assert value(scraped, "arguard_active_blocks", command="host-deny") == 1
    assert value(scraped, "arguard_active_blocks", command="broken-deny") == 0
    assert value(scraped, "arguard_action_seconds_count", command="host-deny", call="add") == 2
    assert value(scraped, "arguard_action_seconds_bucket", command="host-deny", call="add",
                 le="+Inf") == 2
    assert value(scraped, "arguard_reloads_total", result="ok") == 1
    assert value(scraped, "arguard_reloads_total", result="refused") == 1
    assert value(scraped, "arguard_config_last_reload_successful") == 0


def test_the_textfile_has_the_same_series(attacked):
    written = samples((attacked["directory"] / "arguard.prom").read_text())
    served = samples(attacked["text"])
    assert {name for name, _ in written} == {name for name, _ in served}


def test_the_endpoint_serves_only_metrics(attacked):
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{attacked['port']}/other", timeout=10)
    assert missing.value.code == 404
    with socket.create_connection(("127.0.0.1", attacked["port"]), timeout=10) as client:
        client.sendall(b"garbage\r\n\r\n")
        assert client.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", attacked["port"]), timeout=10) as client:
        client.sendall(b"POST /metrics HTTP/1.1\r\n\r\n")
        assert client.recv(100).startswith(b"HTTP/1.1 405")
    assert status(attacked["config"])["metrics"] == {
        "listen": f"127.0.0.1:{attacked['port']}",
        "textfile": str(attacked["directory"] / "arguard.prom"), "error": None}


def test_the_dashboard_queries_only_series_arguard_exports(attacked):
    dashboard = json.loads(DASHBOARD.read_text())
    exported = {name for name, _ in samples(attacked["text"])}
    queries = [target["expr"] for panel in dashboard["panels"]
               for target in panel["targets"]]
    queries.append(dashboard["templating"]["list"][1]["definition"])
    assert all(panel["targets"] for panel in dashboard["panels"])
    used = {name for query in queries for name in re.findall(r"\barguard_[a-z_]+", query)}
    assert used and used <= exported, used - exported
    assert {"arguard_lines_read_total", "arguard_lines_undecoded_total",
            "arguard_lines_ambiguous_total", "arguard_alerts_total",
            "arguard_responses_total", "arguard_active_blocks",
            "arguard_action_seconds_bucket", "arguard_reloads_total"} <= used


def test_a_port_in_use_is_reported_and_the_daemon_still_runs(tmp_path: Path, attacked):
    (tmp_path / "auth.log").write_text("")
    config = hosts_deny_config(tmp_path, f"""
        [[source]]
        path = "auth.log"

        [metrics]
        listen = "127.0.0.1:{attacked['port']}"
        """)
    process = ArguardProcess(tmp_path, config)
    try:
        process.wait_notified("READY=1")
        error = status(config)["metrics"]["error"]
        assert error.startswith(f"metrics endpoint 127.0.0.1:{attacked['port']}: ")
        assert "running without it" in process.stderr
    finally:
        process.close()


def test_docs_metrics_lists_every_exported_series(attacked):
    documented = set(re.findall(r"^\| `(arguard_[a-z_]+)` \|",
                                (REPO / "docs" / "metrics.md").read_text(), re.M))
    exported = {family.name + ("_total" if family.type == "counter" else "")
                for family in text_string_to_metric_families(attacked["text"])}
    assert documented == exported
