"""A fleet on one machine for tests (and bench_fleet.py): hosts a, b, c, each a real
`arguard run` in its own network namespace with the ipset backend, all joined to a private
PostgreSQL cluster (tests/postgres.py) through its Unix socket, and a client namespace from
which the attacker (and a friend) connect to each host.

    client ns: 198.51.100.7 (attacker), .8, .9 (more attackers), .10 (friend) on lo;
               veth 10.215.N.2/24 to host N
    host N:    veth 10.215.N.1/24, a TCP listener on PORT, a route back to 198.51.100.0/24

Each lab uses a schema of its own in the cluster, so tests sharing a cluster never see each
other's decisions.
"""

from __future__ import annotations

import itertools
import json
import textwrap
from contextlib import ExitStack
from pathlib import Path

from tests.conftest import write_config
from tests.daemon_process import ArguardProcess, arguard, failed_password, status, wait_for
from tests.netns import connect, namespace, run_in, tcp_listener, veth
from tests.postgres import PostgresCluster

HOSTS = ("a", "b", "c")
ATTACKER, ATTACKER_2, ATTACKER_3, FRIEND = ("198.51.100.7", "198.51.100.8", "198.51.100.9",
                                            "198.51.100.10")
PORT = 2222
SET_NAME = "arguard-fleet"
_schemas = itertools.count()


def host_address(host: str) -> str:
    return f"10.215.{HOSTS.index(host) + 1}.1"


class FleetLab:
    """The namespaces, listeners and per-host directories; daemons are started by the
    test (`start`), each with the config `configure` wrote."""

    def __init__(self, directory: Path, cluster: PostgresCluster, stack: ExitStack):
        self.directory = directory
        self.cluster = cluster
        self.schema = f"fleet_test_{next(_schemas)}"
        self.client = stack.enter_context(namespace("arguard-fc"))
        self.namespaces: dict[str, str] = {}
        self.processes: dict[str, ArguardProcess] = {}
        attackers = [ATTACKER, ATTACKER_2, ATTACKER_3, FRIEND]
        for address in attackers:
            run_in(self.client, "ip", "address", "add", f"{address}/32", "dev", "lo")
        for index, host in enumerate(HOSTS, start=1):
            ns = stack.enter_context(namespace(f"arguard-f{host}"))
            self.namespaces[host] = ns
            veth(ns, [f"10.215.{index}.1/24"], self.client, [f"10.215.{index}.2/24"])
            run_in(ns, "ip", "route", "add", "198.51.100.0/24", "via", f"10.215.{index}.2")
            stack.enter_context(tcp_listener(ns, PORT))
        self.password_file = cluster.write_password(directory / "fleet.password")
        stack.callback(self.stop_all)

    def config(self, host: str) -> Path:
        return self.directory / host / "arguard.toml"

    def configure(self, host: str, *, responses: str | None = None, white_list: str = "",
                  timeout: int = 600, fleet: str = "", rules: str | None = None) -> Path:
        """Write host's configuration: auth.log followed, firewall-drop through ipset, a
        binding of 5763 to every host of the fleet (or `responses`)."""
        directory = self.directory / host
        directory.mkdir(exist_ok=True)
        (directory / "auth.log").touch()
        responses = responses if responses is not None else f"""
            [[active_response]]
            command = "firewall-drop"
            location = "all"
            rules_id = [5763]
            timeout = {timeout}
            """
        fleet = fleet or f"""
            [fleet]
            dsn = "{self.cluster.dsn()}"
            name = "{host}"
            schema = "{self.schema}"
            password_file = "{self.password_file}"
            """
        path = write_config(directory, extra=textwrap.dedent(f"""
            [global]
            white_list = ["127.0.0.0/8", "::1"{white_list}]

            [[source]]
            path = "auth.log"

            [[command]]
            name = "firewall-drop"
            action = "ipset"
            expect = "srcip"
            timeout_allowed = true
            set_name = "{SET_NAME}"
            """) + textwrap.dedent(responses) + textwrap.dedent(fleet))
        if rules is not None:
            (directory / "rules.d" / "fleet.toml").write_text(textwrap.dedent(rules))
        return path

    def init_schema(self) -> str:
        """`arguard fleet init` with the first configured host's configuration."""
        host = next(h for h in HOSTS if self.config(h).exists())
        return arguard(self.config(host), "fleet", "init", check=True).stdout

    def start(self, *hosts: str, connected: bool = True) -> None:
        """Start the daemons (and wait until each has joined the fleet)."""
        for host in hosts:
            process = ArguardProcess(self.directory / host, self.config(host),
                                     wrapper=["ip", "netns", "exec", self.namespaces[host]])
            self.processes[host] = process
        for host in hosts:
            self.processes[host].wait_notified("READY=1")
            if connected:
                wait_for(lambda: self.fleet(host)["connected"], deadline=20,
                         what=f"{host} to join the fleet")

    def stop(self, host: str) -> None:
        process = self.processes.pop(host)
        try:
            assert process.terminate() == 0, process.stderr
        finally:
            process.close()

    def stop_all(self) -> None:
        for host in list(self.processes):
            self.processes.pop(host).close()

    def status(self, host: str) -> dict:
        return status(self.config(host))

    def fleet(self, host: str) -> dict:
        return self.status(host)["fleet"]

    def attack(self, host: str, address: str = ATTACKER, failures: int = 8) -> None:
        """`failures` failed ssh logins from `address` in host's auth.log."""
        with open(self.directory / host / "auth.log", "a") as log:
            log.write("".join(failed_password(address, 40000 + i) for i in range(failures)))

    def reaches(self, host: str, source: str = ATTACKER) -> str:
        """One TCP connection from `source` to host: "connected" or "timeout"."""
        return connect(self.client, host_address(host), PORT, timeout=0.5, source=source)

    def blocks(self, host: str) -> dict[str, dict]:
        return {b["target"]: b for b in self.status(host)["blocks"]["active"]}

    def in_kernel(self, host: str, address: str) -> bool:
        return address in run_in(self.namespaces[host], "ipset", "list", SET_NAME,
                                 check=False)

    def responses_log(self, host: str) -> list[str]:
        path = self.directory / host / "log" / "active-responses.log"
        return path.read_text().splitlines() if path.exists() else []

    def added(self, host: str, address: str) -> list[str]:
        """The `add` lines of host's active-responses.log for `address`."""
        return [line for line in self.responses_log(host)
                if f"firewall-drop add {address} " in line]

    def insert_row(self, **columns) -> int:
        """A decision row written straight into the database (as a rogue or broken host
        would); its id."""
        names = ", ".join(columns)
        marks = ", ".join(["%s"] * len(columns))
        [(ident,)] = self.cluster.sql_admin(
            f"INSERT INTO {self.schema}.decisions ({names}) VALUES ({marks}) RETURNING id",
            *columns.values())
        return ident


def dump(lab: FleetLab) -> str:
    """Everything a failing fleet test needs to be understood: each host's status, stderr
    and active-responses.log."""
    parts = []
    for host, process in lab.processes.items():
        parts.append(f"--- {host} stderr:\n{process.stderr[-4000:]}")
        parts.append(f"--- {host} responses:\n" + "\n".join(lab.responses_log(host)))
        try:
            parts.append(f"--- {host} fleet: {json.dumps(lab.fleet(host))}")
        except Exception as error:  # noqa: BLE001 - a diagnostic only
            parts.append(f"--- {host} status failed: {error}")
    return "\n".join(parts)
