#!/usr/bin/env bash
# Build (or reuse) the pinned Go tools the chart tests need: helm, promtool, and
# monitoring-crd-check (tools/monitoring-crd-check/, strict decoding of ServiceMonitor and
# PrometheusRule into the Prometheus Operator's Go types).
#
# Why build: the project may only fetch from package registries, so the tools come from
# their Go modules (via the Go module proxy, verified against the checksum database) rather
# than from release tarballs. Each binary is cached under
# ~/.cache/rocky-operator/bin/<tool>-<version> and reused when present, so only the first
# run on a machine pays for the build (helm ~2-4 min, promtool longer on 2 cores).
#
# The Prometheus server (cmd/prometheus, same module and version as promtool) is built too: the
# alerts e2e test scrapes a real operator with it and evaluates the shipped rules and dashboard
# queries. argocd-lua-health (tools/argocd-lua-health/) runs the Argo CD health scripts in
# gopher-lua set up the way Argo CD's util/lua sets it up.
#
# Usage: tools/build-go-tools.sh [helm|promtool|prometheus|monitoring-crd-check|argocd-lua-health|all]
#        (default: all)
# Prints one line per tool: "<tool> <path> (<built in Ns|cached>)".
set -euo pipefail

HELM_VERSION="${ROCKY_HELM_VERSION:-v3.22.0}"
PROMETHEUS_VERSION="${ROCKY_PROMETHEUS_VERSION:-v0.316.0}"   # Go module version of Prometheus v3.16.0
# Kubernetes version helm reports as the default capability (helm's Makefile derives it
# from its client-go: v0.37 -> 1.37); without it `helm template` thinks the cluster is 1.20
# and the chart's kubeVersion >=1.30 constraint fails.
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=37

BIN_DIR="${ROCKY_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/rocky-operator/bin}"
mkdir -p "$BIN_DIR"

build() {  # build <name> <package@version> <ldflags> <tags>
    local name="$1" pkg="$2" ldflags="$3" tags="$4"
    local version="${pkg##*@}" out="$BIN_DIR/$1-${pkg##*@}"
    if [[ -x "$out" ]]; then
        echo "$name $out (cached)"
        return 0
    fi
    local tmp start
    tmp="$(mktemp -d)"
    start=$(date +%s)
    # -trimpath and -s -w keep the link step (the slowest single step here) short.
    GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
        go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$pkg" >&2
    mv "$tmp/$name" "$out.partial" && mv "$out.partial" "$out"
    rm -rf "$tmp"
    echo "$name $out (built $version in $(( $(date +%s) - start ))s)"
}

# build_module <name> <dir>: a wrapper module of this repository (go.mod + go.sum pin every
# dependency); the cache key is a hash of its files, so editing it rebuilds.
build_module() {
    local name="$1" dir="$2"
    local key out start
    key="$(cat "$dir"/go.mod "$dir"/go.sum "$dir"/*.go | sha256sum | cut -c1-12)"
    out="$BIN_DIR/$name-$key"
    if [[ -x "$out" ]]; then
        echo "$name $out (cached)"
        return 0
    fi
    start=$(date +%s)
    (cd "$dir" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" \
        go build -trimpath -ldflags "-s -w" -o "$out.partial" .) >&2
    mv "$out.partial" "$out"
    echo "$name $out (built in $(( $(date +%s) - start ))s)"
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
want="${1:-all}"
case "$want" in
    helm|all)
        build helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
            "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
             -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_K8S_MAJOR \
             -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR \
             -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_K8S_MAJOR \
             -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR" ""
        ;;&
    promtool|all)
        # remove_all_sd drops every service-discovery plugin (cloud SDKs) promtool would
        # otherwise link in; rule checking does not need them.
        # Go module v0.3MM.P is Prometheus 3.MM.P.
        IFS=. read -r _ prom_minor prom_patch <<<"$PROMETHEUS_VERSION"
        build promtool "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" \
            "-X github.com/prometheus/common/version.Version=3.$((prom_minor - 300)).$prom_patch" \
            "remove_all_sd"
        ;;&
    prometheus|all)
        # The server, for the alerts e2e test: static scrape configs only (remove_all_sd), no
        # embedded web UI (the test uses the HTTP API).
        IFS=. read -r _ prom_minor prom_patch <<<"$PROMETHEUS_VERSION"
        build prometheus "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
            "-X github.com/prometheus/common/version.Version=3.$((prom_minor - 300)).$prom_patch" \
            "remove_all_sd"
        ;;&
    monitoring-crd-check|all)
        build_module monitoring-crd-check "$here/monitoring-crd-check"
        ;;&
    argocd-lua-health|all)
        build_module argocd-lua-health "$here/argocd-lua-health"
        ;;&
    helm|promtool|prometheus|monitoring-crd-check|argocd-lua-health|all) ;;
    *) echo "usage: $0 [helm|promtool|prometheus|monitoring-crd-check|argocd-lua-health|all]" >&2; exit 2 ;;
esac
