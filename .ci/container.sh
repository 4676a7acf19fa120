#!/usr/bin/env bash
# Builds herald's container image from the Dockerfile with buildah (Debian's package,
# vfs storage, chroot isolation: no daemon, works as root in an unprivileged sandbox) and
# runs `herald version` and the quickstart in it as the image's user, with /data as the
# working folder. No registry is reachable here, so the image is built with
# BINARY_FROM=prebuilt: the same static binary the Dockerfile's build stage makes
# (CGO_ENABLED=0, -trimpath, version stamped), built on this machine.
# Usage: .ci/container.sh WORKDIR
set -euo pipefail
cd "$(dirname "$0")/.."
work=$1
run() { echo "+ $*" >&2; "$@"; }

if ! command -v buildah >/dev/null; then
	run apt-get update -qq
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah
fi
b() { run buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run" "$@"; }

rm -rf "$work/context" && mkdir -p "$work/context/data"
cp Dockerfile "$work/context/"
cp /etc/ssl/certs/ca-certificates.crt "$work/context/"
run env CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X main.version=v0.0.0-ci -X main.commit=$(git rev-parse HEAD)" \
	-o "$work/context/herald" ./cmd/herald

b bud --isolation chroot --build-arg BINARY_FROM=prebuilt -t localhost/herald:ci "$work/context"
ctr=$(b from localhost/herald:ci)
trap 'buildah --storage-driver vfs --root "$work/storage" --runroot "$work/run" rm "$ctr" >/dev/null 2>&1 || true' EXIT
inside() { b run --isolation chroot "$ctr" -- "$@"; }

inside /usr/local/bin/herald version | tee "$work/version.txt"
grep -q '^herald v0.0.0-ci (commit ' "$work/version.txt"
b inspect --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.WorkingDir}} {{.OCIv1.Config.Volumes}}' localhost/herald:ci | tee "$work/config.txt"
grep -q '^65532:65532 /data map\[/data:{}\]' "$work/config.txt"
# The quickstart, as the image's user in /data.
inside /usr/local/bin/herald init demo
inside /usr/local/bin/herald validate demo/campaign.yaml
inside /usr/local/bin/herald send demo/campaign.yaml --yes --json | tee "$work/summary.json"
grep -q '"sent":10' "$work/summary.json"
inside /usr/local/bin/herald status demo/campaign.yaml
echo "container image: ok" >&2
