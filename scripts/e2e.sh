#!/usr/bin/env bash
# Runs the end-to-end suite (tests/e2e/) against the loopback Kubernetes control plane of
# ../shared/tools/k8s (kube-apiserver, kube-controller-manager, kube-scheduler; no kubelet: the
# suite simulates the nodes).
#
#   scripts/e2e.sh [LIBTEST ARGS...]      # e.g. scripts/e2e.sh lifecycle::   or   scripts/e2e.sh --test-threads=4
#   scripts/e2e.sh --all-tests [ARGS...]  # every test target (make test), the e2e suite included
#
# With --all-tests the command is `cargo test --locked` over every target instead of the e2e suite
# alone, so that `make test` runs each test once: against the control plane when there is one,
# and (saying so) without it when there is none.
#
# - Without the control plane's tools (../shared/tools/k8s, or $CARBONSHIFT_K8S_TOOLS) it prints one
#   line saying so and exits 0.
# - Otherwise it starts the control plane with up.sh when it is not up (and then stops it again with
#   down.sh on exit, whatever happens), and runs
#   `cargo test --locked --test e2e -- --nocapture --test-threads=$CARBONSHIFT_E2E_THREADS ARGS`
#   with CARBONSHIFT_E2E_KUBECONFIG set and CARBONSHIFT_E2E_REQUIRE=1 (a skipped scenario fails).
#   A control plane that was already up is left running.
# - The scenarios mostly wait for clean windows, so they run in parallel: 16 test threads unless
#   CARBONSHIFT_E2E_THREADS or a --test-threads argument says otherwise.
# - kubectl and helm come from .tools/bin (make tools, scripts/install-tools.sh), installed if missing.
#
# Exit status: that of cargo test (0 when every scenario passed).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

all_tests=0
if [ "${1:-}" = "--all-tests" ]; then
    all_tests=1
    shift
fi

tools="${CARBONSHIFT_K8S_TOOLS:-../shared/tools/k8s}"
if [ ! -d "$tools" ] || [ ! -x "$tools/up.sh" ]; then
    echo "e2e: SKIPPED — ../shared/tools/k8s not found (no local control plane); the e2e suite needs a cluster"
    if [ "$all_tests" = 1 ]; then
        exec cargo test --locked "$@"
    fi
    exit 0
fi
tools="$(cd "$tools" && pwd)"

log() { printf 'e2e: %s\n' "$*" >&2; }

cp_home="${CP_HOME:-${TMPDIR:-/tmp}/carbonshift-cp}"
kubeconfig="$cp_home/kubeconfig"

# kubectl and helm for the suite (and for the readiness check below).
if [ ! -x "$repo/.tools/bin/kubectl" ] || [ ! -x "$repo/.tools/bin/helm" ]; then
    log "installing kubectl and helm into .tools/bin"
    scripts/install-tools.sh "$repo/.tools/bin" >/dev/null
fi
kubectl="$repo/.tools/bin/kubectl"

# Is the control plane up? Every process recorded in its pids file alive, and /readyz answering ok.
cp_up() {
    [ -s "$cp_home/pids" ] && [ -s "$kubeconfig" ] || return 1
    local pid
    while read -r _ pid; do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    done < "$cp_home/pids"
    [ "$("$kubectl" --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz 2>/dev/null)" = ok ]
}

started=0
stop_cp() {
    if [ "$started" = 1 ]; then
        log "stopping the control plane this script started"
        CP_HOME="$cp_home" "$tools/down.sh" || log "down.sh failed"
    fi
}
trap stop_cp EXIT

if cp_up; then
    log "control plane already up ($kubeconfig); leaving it running afterwards"
else
    log "starting the control plane with $tools/up.sh"
    # up.sh stops what it started itself when it fails; from here on it is ours to stop.
    kubeconfig="$(CP_HOME="$cp_home" "$tools/up.sh")"
    started=1
fi

threads=()
case " $* " in
    *" --test-threads"*) ;;
    *) threads=("--test-threads=${CARBONSHIFT_E2E_THREADS:-16}") ;;
esac

status=0
export CARBONSHIFT_E2E_KUBECONFIG="$kubeconfig" CARBONSHIFT_E2E_CP_HOME="$cp_home" CARBONSHIFT_E2E_REQUIRE=1
if [ "$all_tests" = 1 ]; then
    log "running every test target, the e2e suite against $kubeconfig"
    cargo test --locked -- ${threads[@]+"${threads[@]}"} "$@" || status=$?
else
    log "running the suite against $kubeconfig"
    cargo test --locked --test e2e -- --nocapture ${threads[@]+"${threads[@]}"} "$@" || status=$?
fi
exit "$status"
