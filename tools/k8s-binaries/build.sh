#!/usr/bin/env bash
# Build (or reuse) the control-plane binaries the e2e tests and scripts/control-plane run:
# kube-apiserver, kube-controller-manager and kubectl of the Kubernetes release pinned in
# kubernetes/go.mod, and etcd of the release pinned in etcd/go.mod. Everything comes from the Go
# module proxy; nothing is downloaded prebuilt.
#
# The binaries are cached under $ROCKY_K8S_CACHE (default ~/.cache/rocky-operator/k8s)/<version>/,
# keyed by a hash of the wrapper modules, so a second run costs well under a second.
#
# Usage: tools/k8s-binaries/build.sh [--print-dir] [--force]
#   --print-dir  print only the binary directory on stdout (progress goes to stderr)
#   --force      rebuild even when the cache is valid
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
print_dir=0
force=0
for arg in "$@"; do
    case "$arg" in
        --print-dir) print_dir=1 ;;
        --force) force=1 ;;
        -h | --help)
            sed -n '2,14p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *)
            echo "build.sh: unknown argument: $arg" >&2
            exit 2
            ;;
    esac
done

log() { echo "k8s-binaries: $*" >&2; }

command -v go >/dev/null || {
    log "go is not on PATH (Go >= 1.26 is needed)"
    exit 1
}

k8s_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")"
etcd_version="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")"
[[ -n "$k8s_version" && -n "$etcd_version" ]] || {
    log "cannot read the pinned versions from the wrapper go.mod files"
    exit 1
}

# The cache key covers every input of the build: wrapper modules and the Go toolchain version.
stamp="$(
    {
        cat "$here"/kubernetes/go.mod "$here"/kubernetes/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum
        go env GOVERSION
        sed -n '/^# build-recipe/,/^# end-build-recipe/p' "${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16
)"
cache_root="${ROCKY_K8S_CACHE:-$HOME/.cache/rocky-operator/k8s}"
bin_dir="$cache_root/$k8s_version"
binaries=(kube-apiserver kube-controller-manager kubectl etcd)

cache_valid() {
    [[ -f "$bin_dir/.stamp" && "$(cat "$bin_dir/.stamp")" == "$stamp" ]] || return 1
    local b
    for b in "${binaries[@]}"; do
        [[ -x "$bin_dir/$b" ]] || return 1
    done
}

start=$(date +%s.%N)
if [[ $force -eq 0 ]] && cache_valid; then
    elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
    log "cached: kubernetes $k8s_version + etcd $etcd_version in $bin_dir (checked in ${elapsed}s)"
else
    log "building kubernetes $k8s_version (kube-apiserver, kube-controller-manager, kubectl) and etcd $etcd_version"
    log "this takes a long while on a first run (2 cores: ~15-30 min); later runs reuse $bin_dir"
    mkdir -p "$cache_root"
    staging="$(mktemp -d "$cache_root/.build-XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    # build-recipe
    export GOFLAGS="-trimpath -mod=mod -buildvcs=false"
    export CGO_ENABLED=0
    build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    minor="${k8s_version#v1.}"
    minor="${minor%%.*}"
    version_flags=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        version_flags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
    done
    t0=$(date +%s)
    (cd "$here/kubernetes" && go build -ldflags "-s -w$version_flags" -o "$staging/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kubectl)
    t1=$(date +%s)
    log "kubernetes binaries built in $((t1 - t0))s"
    (cd "$here/etcd" && go build -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3)
    t2=$(date +%s)
    log "etcd built in $((t2 - t1))s"
    # end-build-recipe
    rm -rf "$bin_dir"
    mkdir -p "$bin_dir"
    for b in "${binaries[@]}"; do
        mv "$staging/$b" "$bin_dir/$b"
    done
    echo "$stamp" >"$bin_dir/.stamp"
    elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.0f", e - s}')
    log "built kubernetes $k8s_version + etcd $etcd_version into $bin_dir in ${elapsed}s"
fi

if [[ $print_dir -eq 1 ]]; then
    echo "$bin_dir"
else
    for b in "${binaries[@]}"; do
        printf '%s\n' "$bin_dir/$b"
    done
fi
