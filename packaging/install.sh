#!/bin/sh
# Install arguard into its own virtualenv (/opt/arguard), put a configuration in /etc/arguard
# (an edited one is never overwritten), create the state and log directories, install the
# systemd unit, the logrotate snippet, the manual page and the shell completions.
#
#   install.sh [--root DIR] [--start]
#
# A first install white-lists the address of the SSH session it runs in ($SSH_CONNECTION),
# prints what arguard will block, and does not start blocking: run `arguard run --dry-run`
# first to see what it would do, then start the service (or give --start). An upgrade
# restarts a service that is running.
#
# --root DIR installs below DIR instead of / (for tests and image builds): nothing outside
# DIR is touched, the configuration's paths all point below DIR, no packages are installed
# and no service is started.
set -eu

ROOT=""
START=no
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --root=*) ROOT="${1#--root=}"; shift ;;
        --start) START=yes; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
fi
PREFIX="$ROOT/opt/arguard"
CONFIG="$ROOT/etc/arguard/arguard.toml"

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
# the `install` extra: what generates the manual page and the completions below
"$PREFIX/bin/pip" install -q --disable-pip-version-check "$SOURCE[install]"
# arguard does not use setuptools at run time, but with it installed python-iptables' import
# of distutils goes through setuptools' shim and loads pkg_resources: ~15 MB of resident
# memory for the daemon's whole life.
"$PREFIX/bin/pip" uninstall -q -y setuptools 2>/dev/null || true
install -d -m 0755 "$PREFIX/share/doc/arguard"
install -m 0644 "$SOURCE/README.md" "$SOURCE"/docs/*.md "$PREFIX/share/doc/arguard/"

install -d -m 0755 "$ROOT/etc/arguard" "$ROOT/etc/arguard/decoders.d" "$ROOT/etc/arguard/rules.d" \
    "$ROOT/etc/arguard/lists"
install -d -m 0750 "$ROOT/etc/arguard/active-response" "$ROOT/etc/arguard/active-response/bin"
# The configuration: the shipped one with its paths under DIR (--root), and the address of
# this SSH session white-listed.
ROOT_ARG=""
[ -n "$ROOT" ] && ROOT_ARG="--root=$ROOT"
GENERATED="$ROOT/etc/arguard/.arguard.toml.new"
# shellcheck disable=SC2086
"$PREFIX/bin/python" -m arguard.firstinstall $ROOT_ARG \
    --ssh-connection "${SSH_CONNECTION:-}" > "$GENERATED"
FIRST=no
if [ -e "$CONFIG" ]; then
    echo "arguard: keeping the existing $CONFIG (the new default is arguard.toml.dist)"
    install -m 0644 "$GENERATED" "$CONFIG.dist"
else
    FIRST=yes
    install -m 0644 "$GENERATED" "$CONFIG"
fi
rm -f "$GENERATED"
install -d -m 0700 "$ROOT/var/lib/arguard"
install -d -m 0750 "$ROOT/var/log/arguard"
install -d -m 0755 "$ROOT/etc/systemd/system" "$ROOT/etc/logrotate.d" "$ROOT/usr/local/sbin"
install -m 0644 "$SOURCE/packaging/arguard.service" "$ROOT/etc/systemd/system/arguard.service"
install -m 0644 "$SOURCE/packaging/arguard.logrotate" "$ROOT/etc/logrotate.d/arguard"
ln -sf /opt/arguard/bin/arguard "$ROOT/usr/local/sbin/arguard"
# `ip route` then shows arguard's blackhole routes as "proto arguard" (number 152)
install -d -m 0755 "$ROOT/etc/iproute2/rt_protos.d"
echo "152 arguard" > "$ROOT/etc/iproute2/rt_protos.d/arguard.conf"

# The manual page and the shell completions, generated from the installed argument parser.
MAN="$ROOT/usr/local/share/man/man1"
BASH_COMPLETIONS="$ROOT/usr/local/share/bash-completion/completions"
ZSH_COMPLETIONS="$ROOT/usr/local/share/zsh/site-functions"
install -d -m 0755 "$MAN" "$BASH_COMPLETIONS" "$ZSH_COMPLETIONS"
"$PREFIX/bin/python" -m arguard.clidocs man > "$MAN/arguard.1"
"$PREFIX/bin/python" -m arguard.clidocs bash > "$BASH_COMPLETIONS/arguard"
"$PREFIX/bin/python" -m arguard.clidocs zsh > "$ZSH_COMPLETIONS/_arguard"
chmod 0644 "$MAN/arguard.1" "$BASH_COMPLETIONS/arguard" "$ZSH_COMPLETIONS/_arguard"

# Validates everything and says what arguard will block, and what it never will.
"$PREFIX/bin/arguard" check-config -c "$CONFIG"

ARGUARD="$PREFIX/bin/arguard"
[ -z "$ROOT" ] && ARGUARD=arguard
echo
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$START" = yes ]; then
        systemctl enable --now arguard.service
        systemctl restart arguard.service
        echo "arguard: running. See 'arguard status'; configuration in $CONFIG"
    elif [ "$FIRST" = no ] && systemctl is-active --quiet arguard.service; then
        systemctl restart arguard.service
        echo "arguard: upgraded and restarted. See 'arguard status'"
    else
        echo "arguard: installed, NOT started: nothing is blocked yet. Next:"
        echo "  1. check the white list in $CONFIG (addresses never blocked)"
        echo "  2. see what arguard would do, applying nothing (Ctrl-C to stop):"
        echo "       $ARGUARD run --dry-run"
        echo "  3. start blocking:  systemctl enable --now arguard"
    fi
else
    echo "arguard: installed. systemd is not running here. First see what arguard would do,"
    echo "applying nothing (Ctrl-C to stop), then run it for real in the foreground:"
    echo "    $ARGUARD run --dry-run -c $CONFIG"
    echo "    $ARGUARD run -c $CONFIG"
fi
