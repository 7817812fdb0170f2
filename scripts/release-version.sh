#!/usr/bin/env bash
# Checks a release tag against the versions in the repository and prints the release version.
#
#   scripts/release-version.sh TAG          # e.g. scripts/release-version.sh v0.2.0
#
# TAG must be `v` + the `version` of Cargo.toml, which must equal Chart.yaml's `appVersion`
# (tests/chart.rs checks that too). On success prints `version=X.Y.Z` (for $GITHUB_OUTPUT) and
# exits 0; otherwise says what differs and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "release-version: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/release-version.sh TAG (for example v0.2.0)"
tag="$1"
crate="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
app="$(sed -n 's/^appVersion: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/carbonshift/Chart.yaml | head -n 1)"
[ -n "$crate" ] || die "no version in Cargo.toml"
[ -n "$app" ] || die "no appVersion in charts/carbonshift/Chart.yaml"
case "$tag" in
    v[0-9]*) ;;
    *) die "tag $tag is not of the form vX.Y.Z" ;;
esac
[ "${tag#v}" = "$crate" ] || die "tag $tag does not match Cargo.toml's version $crate: bump Cargo.toml (and Chart.yaml's appVersion) first"
[ "$app" = "$crate" ] || die "Chart.yaml's appVersion $app differs from Cargo.toml's version $crate"
echo "version=$crate"
