#!/usr/bin/env bash
# Builds the local control plane from Go modules into a cache outside the repo:
#   ${PHASESHIFT_CACHE:-~/.cache/phaseshift}/bin/k8s-<v>_etcd-<v>_kwok-<v>/
# with `tools/build.sh node`, what a real node runs beside containerd (kubelet,
# kube-proxy, CoreDNS, metrics-server) into
#   ${PHASESHIFT_CACHE:-~/.cache/phaseshift}/bin/node-k8s-<v>_coredns-<v>_metrics-server-<v>/
# and, with `tools/build.sh prometheus`, the Prometheus that manifests/ installs (with
# only its Kubernetes service discovery) into .../bin/prometheus-<v>/.
# Each binary is built once and reused; a cold build takes a while on 2 cores and
# says what it is doing. Prints the binary directory as its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

cache=${PHASESHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phaseshift}
target=${1:-control-plane}
case "$target" in
  control-plane) bin="$cache/bin/k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}" ;;
  node) bin="$cache/bin/node-k8s-${KUBERNETES_VERSION}_coredns-${COREDNS_VERSION}_metrics-server-${METRICS_SERVER_VERSION}" ;;
  prometheus) bin="$cache/bin/prometheus-${PROMETHEUS_VERSION}" ;;
  *) echo "tools/build.sh: unknown target '$target' (control-plane, node or prometheus)" >&2; exit 2 ;;
esac
mkdir -p "$bin"

command -v go >/dev/null || { echo "tools/build.sh: no 'go' on PATH; install Go >= 1.26" >&2; exit 1; }

build() { # build <module dir> <package> <output name> [ldflags] [tags]
  local dir=$1 pkg=$2 out=$3 ldflags=${4:-} tags=${5:-}
  if [ -x "$bin/$out" ]; then return 0; fi
  echo "building $out from $pkg (cold build, this takes minutes)..." >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$bin/.$out.tmp" "$pkg")
  mv "$bin/.$out.tmp" "$bin/$out"
  echo "built $out in $((SECONDS - start))s" >&2
}

k8s_minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
k8s_ldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

if [ "$target" = prometheus ]; then
  v=github.com/prometheus/common/version
  build prometheus github.com/prometheus/prometheus/cmd/prometheus prometheus \
    "-X $v.Version=${PROMETHEUS_VERSION#v} -X $v.Branch=release -X $v.Revision=v${PROMETHEUS_VERSION#v}" \
    remove_all_sd,enable_kubernetes_sd
elif [ "$target" = node ]; then
  for c in kubelet kube-proxy; do
    build kubernetes "k8s.io/kubernetes/cmd/$c" "$c" "$k8s_ldflags"
  done
  build coredns github.com/coredns/coredns coredns
  build metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server metrics-server \
    "-X sigs.k8s.io/metrics-server/pkg/version.gitVersion=${METRICS_SERVER_VERSION}"
else
  build etcd . etcd
  build kwok sigs.k8s.io/kwok/cmd/kwok kwok
  build kwok sigs.k8s.io/kwok/cmd/kwokctl kwokctl
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    build kubernetes "k8s.io/kubernetes/cmd/$c" "$c" "$k8s_ldflags"
  done
fi
echo "$bin"
