#!/usr/bin/env bash
# Packages the Helm chart for a release: chart `version` and `appVersion` set to VERSION, and the
# image pinned to DIGEST (the multi-arch image index the release workflow pushed), so that an
# install from the OCI chart pulls exactly the image built from the same tag.
#
#   scripts/package-chart.sh VERSION DIGEST OUT_DIR     # writes OUT_DIR/carbonshift-VERSION.tgz
#
# The working tree is not changed: the chart is copied to a temporary directory first. helm comes
# from $HELM, else .tools/bin/helm, else PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "package-chart: $*" >&2; exit 1; }

[ $# -eq 3 ] || die "usage: scripts/package-chart.sh VERSION DIGEST OUT_DIR"
version="$1" digest="$2" out="$3"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] || die "VERSION $version is not a semantic version"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "DIGEST $digest is not of the form sha256:<64 hex digits>"
helm="${HELM:-}"
if [ -z "$helm" ]; then
    if [ -x .tools/bin/helm ]; then helm=.tools/bin/helm; else helm="$(command -v helm)" || die "helm not found"; fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp -R charts/carbonshift "$tmp/carbonshift"
sed -i -e "s/^version: .*/version: $version/" -e "s/^appVersion: .*/appVersion: \"$version\"/" "$tmp/carbonshift/Chart.yaml"
# values.yaml's image block holds the only `  digest: ""` line of the file.
[ "$(grep -c '^  digest: ""$' "$tmp/carbonshift/values.yaml")" = 1 ] || die "values.yaml has no single empty image.digest line"
sed -i -e "s/^  digest: \"\"$/  digest: \"$digest\"/" "$tmp/carbonshift/values.yaml"
mkdir -p "$out"
"$helm" lint --strict "$tmp/carbonshift" >&2
"$helm" package "$tmp/carbonshift" --destination "$out" >&2
echo "$out/carbonshift-$version.tgz"
