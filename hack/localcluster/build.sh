#!/usr/bin/env bash
# Build kube-apiserver, etcd and kubectl from their Go modules into bin/, only when a
# binary is missing or does not report the Kubernetes release pinned in go.mod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${BIN_DIR:-$root/bin}
k8s=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$here/go.mod")

# current BINARY EXPECTED ARGS...: BINARY exists and its version output contains EXPECTED.
current() { [ -x "$out/$1" ] && [[ "$("$out/$1" "${@:3}" 2>/dev/null)" == *"$2"* ]]; }
if current kube-apiserver "Kubernetes $k8s" --version && current kubectl "Client Version: $k8s" version --client \
   && current etcd "etcd Version: ${etcd#v}" --version; then
  echo "==> control plane binaries are current (Kubernetes $k8s, etcd $etcd) in $out"
  exit 0
fi

"$here/ensure-go.sh"
minor=${k8s#v1.}; minor=${minor%%.*}
echo "==> building kube-apiserver, kubectl $k8s and etcd $etcd from their Go modules into $out"
echo "    (the first build downloads ~270 modules and compiles ~2,300 packages: 5-10 minutes on 2 cores;"
echo "     later runs reuse the Go caches and take seconds; a progress line follows every 15 s)"
mkdir -p "$out"
start=$(date +%s)
cd "$here"
"$root/hack/progress.sh" "go build kube-apiserver, etcd, kubectl" \
  env GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" go build -v -trimpath -ldflags "-s -w \
  -X k8s.io/component-base/version.gitVersion=$k8s \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
  -X k8s.io/client-go/pkg/version.gitVersion=$k8s" \
  -o "$out/" ./cmd/kube-apiserver ./cmd/etcd ./cmd/kubectl
echo "==> built in $(( $(date +%s) - start ))s: $("$out/kube-apiserver" --version), etcd $etcd"
