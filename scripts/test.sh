#!/bin/sh
# Set up everything the tests need on a fresh Debian machine, then run them.
# Run as root: the kernel tests create private network namespaces.
set -eu
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq iptables ipset nftables iproute2 systemd systemd-journal-remote \
        python3-venv python3-firewall python3-nftables dbus-daemon \
        >/dev/null
fi
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
