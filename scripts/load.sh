#!/usr/bin/env bash
# scripts/load.sh [N]: the operator under load on a real control plane (`make load`).
#
# Brings up the loopback control plane of ../shared/tools/k8s (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) unless it is up already, builds the release binary,
# and runs the ignored test tests/load/main.rs with N deferrable Jobs (default 1000; the
# environment variable CARBONSHIFT_LOAD_JOBS works too). The figures go to
# target/load/load-N.md (and .json) and into docs/benchmarks.md, section
# "## Operator on a real control plane (make load)".
#
# Only what this script started is stopped at the end: a control plane that was up before stays
# up. Environment: CP_HOME (default ${TMPDIR:-/tmp}/carbonshift-cp), CP_APISERVER_PORT (6443),
# CARBONSHIFT_K8S_TOOLS (default ../shared/tools/k8s beside the repository), and the harness's
# CARBONSHIFT_LOAD_* settings (see tests/load/main.rs), which are passed through.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '[load] %s\n' "$*" >&2; }

N=${1:-${CARBONSHIFT_LOAD_JOBS:-1000}}
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
  say "usage: scripts/load.sh [N]   (N: number of Jobs, a whole number above 0; got '$N')"
  exit 2
fi

K8S=${CARBONSHIFT_K8S_TOOLS:-$ROOT/../shared/tools/k8s}
if [ ! -x "$K8S/up.sh" ] || [ ! -x "$K8S/down.sh" ]; then
  say "ERROR: $K8S/up.sh and down.sh not found: make load needs the shared control-plane tools"
  say "(../shared/tools/k8s beside the repository, or set CARBONSHIFT_K8S_TOOLS). Nothing was run."
  exit 1
fi
K8S=$(cd "$K8S" && pwd)
export CP_HOME=${CP_HOME:-${TMPDIR:-/tmp}/carbonshift-cp}
API_PORT=${CP_APISERVER_PORT:-6443}

# Is a control plane answering already? Then it is not ours to stop.
already_up() {
  [ -s "$CP_HOME/pids" ] && [ -r "$CP_HOME/pki/admin.key" ] &&
    [ "$(curl -sf --max-time 5 --cacert "$CP_HOME/pki/ca.crt" --cert "$CP_HOME/pki/admin.crt" \
      --key "$CP_HOME/pki/admin.key" "https://127.0.0.1:$API_PORT/readyz" 2>/dev/null)" = ok ]
}
started=0
if already_up; then
  say "control plane already up ($CP_HOME); it stays up afterwards"
else
  say "starting the control plane with $K8S/up.sh (stopped again at the end)"
  started=1
fi
stop_started() {
  if [ "$started" = 1 ]; then
    say "stopping the control plane this script started"
    "$K8S/down.sh" >&2 || say "WARNING: $K8S/down.sh failed"
  fi
}
trap stop_started EXIT
kubeconfig=$("$K8S/up.sh" | tail -n 1)
[ -s "$kubeconfig" ] || { say "ERROR: up.sh printed no kubeconfig (got '$kubeconfig')"; exit 1; }
[ -f "$CP_HOME/audit.log" ] || { say "ERROR: no audit log at $CP_HOME/audit.log"; exit 1; }

mkdir -p target/load
# The harness starts the binary cargo builds for the test itself (CARGO_BIN_EXE_carbonshift, with
# the test build's features): building it separately first would only build it twice.

say "running the load test with N=$N against $kubeconfig"
CARBONSHIFT_LOAD_KUBECONFIG="$kubeconfig" \
CARBONSHIFT_LOAD_JOBS="$N" \
CARBONSHIFT_LOAD_AUDIT_LOG="${CARBONSHIFT_LOAD_AUDIT_LOG:-$CP_HOME/audit.log}" \
CARBONSHIFT_LOAD_REPORT="${CARBONSHIFT_LOAD_REPORT:-$ROOT/target/load/load-$N.md}" \
CARBONSHIFT_LOAD_DOCS="${CARBONSHIFT_LOAD_DOCS-$ROOT/docs/benchmarks.md}" \
  cargo test --release --locked --test load -- --ignored --nocapture
