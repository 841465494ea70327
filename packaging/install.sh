#!/bin/sh
# Install arguard into its own virtualenv (/opt/arguard), put the default configuration in
# /etc/arguard (an edited one is never overwritten), create the state and log directories,
# install the systemd unit and logrotate snippet, and start the service where systemd runs.
#
#   install.sh [--root DIR]
#
# --root DIR installs below DIR instead of / (for tests and image builds): nothing outside
# DIR is touched, no packages are installed and no service is started.
set -eu

ROOT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --root=*) ROOT="${1#--root=}"; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
PREFIX="$ROOT/opt/arguard"

if [ -z "$ROOT" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install.sh: run as root (or use --root DIR)" >&2
        exit 1
    fi
    if command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3 python3-venv iptables ipset iproute2 >/dev/null
    fi
fi

echo "arguard: installing into $PREFIX"
python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --disable-pip-version-check "$SOURCE"
# arguard does not use setuptools at run time, but with it installed python-iptables' import
# of distutils goes through setuptools' shim and loads pkg_resources: ~15 MB of resident
# memory for the daemon's whole life.
"$PREFIX/bin/pip" uninstall -q -y setuptools 2>/dev/null || true
install -d -m 0755 "$PREFIX/share/doc/arguard"
install -m 0644 "$SOURCE/README.md" "$PREFIX/share/doc/arguard/README.md"

install -d -m 0755 "$ROOT/etc/arguard" "$ROOT/etc/arguard/decoders.d" "$ROOT/etc/arguard/rules.d"
install -d -m 0750 "$ROOT/etc/arguard/active-response" "$ROOT/etc/arguard/active-response/bin"
if [ -e "$ROOT/etc/arguard/arguard.toml" ]; then
    echo "arguard: keeping the existing $ROOT/etc/arguard/arguard.toml"
    install -m 0644 "$SOURCE/conf/arguard.toml" "$ROOT/etc/arguard/arguard.toml.dist"
else
    install -m 0644 "$SOURCE/conf/arguard.toml" "$ROOT/etc/arguard/arguard.toml"
fi
install -d -m 0700 "$ROOT/var/lib/arguard"
install -d -m 0750 "$ROOT/var/log/arguard"
install -d -m 0755 "$ROOT/etc/systemd/system" "$ROOT/etc/logrotate.d" "$ROOT/usr/local/sbin"
install -m 0644 "$SOURCE/packaging/arguard.service" "$ROOT/etc/systemd/system/arguard.service"
install -m 0644 "$SOURCE/packaging/arguard.logrotate" "$ROOT/etc/logrotate.d/arguard"
ln -sf /opt/arguard/bin/arguard "$ROOT/usr/local/sbin/arguard"
# `ip route` then shows arguard's blackhole routes as "proto arguard" (number 152)
install -d -m 0755 "$ROOT/etc/iproute2/rt_protos.d"
echo "152 arguard" > "$ROOT/etc/iproute2/rt_protos.d/arguard.conf"

"$PREFIX/bin/arguard" check-config -c "$ROOT/etc/arguard/arguard.toml"

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now arguard.service
    systemctl restart arguard.service
    echo "arguard: running. See 'arguard status'; configuration in /etc/arguard/arguard.toml"
else
    echo "arguard: installed. systemd is not running here; start it in the foreground with:"
    echo "    $ROOT/opt/arguard/bin/arguard run -c $ROOT/etc/arguard/arguard.toml"
fi
