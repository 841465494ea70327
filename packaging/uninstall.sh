#!/bin/sh
# Uninstall arguard: stop the service, lift every block it holds (firewall entries, routes,
# hosts.deny lines, locked accounts), then remove the virtualenv, the unit, the logrotate
# snippet, the manual page, the completions and the command symlink. /etc/arguard, the state and the logs are kept unless
# --purge is given.
#
#   uninstall.sh [--root DIR] [--purge]
#
# --root DIR works below DIR instead of / (for tests): nothing outside DIR is touched except
# what the configuration below DIR points at, and no service is stopped.
set -eu

ROOT=""
PURGE=no
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --root=*) ROOT="${1#--root=}"; shift ;;
        --purge) PURGE=yes; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
PREFIX="$ROOT/opt/arguard"
CONFIG="$ROOT/etc/arguard/arguard.toml"

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    echo "uninstall.sh: run as root (or use --root DIR)" >&2
    exit 1
fi

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now arguard.service 2>/dev/null || true
fi

if [ -x "$PREFIX/bin/arguard" ]; then
    CONFIG_ARG=""
    [ -e "$CONFIG" ] && CONFIG_ARG="-c $CONFIG"
    # With the daemon stopped this works directly on its database and backends, under the
    # state lock; if a daemon still runs (started by hand), it goes through its socket.
    # shellcheck disable=SC2086
    if ! "$PREFIX/bin/arguard" unblock --all $CONFIG_ARG; then
        echo "uninstall.sh: some blocks could not be lifted (see above); arguard is NOT" \
             "removed. Fix the cause, or run '$PREFIX/bin/arguard status', then run this again." >&2
        exit 1
    fi
fi

rm -f "$ROOT/etc/systemd/system/arguard.service" "$ROOT/etc/logrotate.d/arguard" \
    "$ROOT/etc/iproute2/rt_protos.d/arguard.conf" "$ROOT/usr/local/share/man/man1/arguard.1" \
    "$ROOT/usr/local/share/bash-completion/completions/arguard" \
    "$ROOT/usr/local/share/zsh/site-functions/_arguard"
if [ -L "$ROOT/usr/local/sbin/arguard" ]; then
    rm -f "$ROOT/usr/local/sbin/arguard"
fi
rm -rf "$PREFIX"
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

if [ "$PURGE" = yes ]; then
    rm -rf "$ROOT/etc/arguard" "$ROOT/var/lib/arguard" "$ROOT/var/log/arguard"
    echo "arguard: removed, with its configuration, state and logs"
else
    echo "arguard: removed; kept $ROOT/etc/arguard, $ROOT/var/lib/arguard and" \
         "$ROOT/var/log/arguard (--purge removes them)"
fi
