#!/bin/sh
# Wazuh's own ruleset tests against arguard, as the CI test tests/test_wazuh_conformance.py
# runs them: once with the shipped ruleset, once with Wazuh's XML of the same products
# imported by `arguard import wazuh` and loaded alone. Prints per file passed/total and every
# failing case. Usage: scripts/wazuh-conformance.sh [SHARED_DIR] (default: ../shared)
set -eu
cd "$(dirname "$0")/.."
shared=${1:-../shared}
arguard=${ARGUARD:-.venv/bin/arguard}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== shipped ruleset"
"$arguard" ruletest "$shared/corpus/wazuh-tests" || true

echo
echo "== Wazuh XML ($shared/corpus/wazuh-ruleset) imported and run alone"
"$arguard" import wazuh "$shared"/corpus/wazuh-ruleset/*.xml -o "$work/imported" \
    >/dev/null 2>"$work/import.log" || true
grep 'NOT TRANSLATED' "$work/import.log" || true
cat > "$work/arguard.toml" <<TOML
[ruleset]
shipped = false
[paths]
decoders_d = "imported/decoders.d"
rules_d = "imported/rules.d"
state_dir = "state"
log_dir = "log"
run_dir = "run"
TOML
"$arguard" ruletest -c "$work/arguard.toml" "$shared/corpus/wazuh-tests" || true
