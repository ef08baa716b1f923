#!/usr/bin/env bash
# Run the controller in a local kind cluster (for users with Docker; CI has no Docker engine).
#
#   hack/kind-up.sh            create the cluster, build and load the image, install the chart
#   KIND_CLUSTER=x hack/kind-up.sh       another cluster name (default telco-intent)
#   HELM_VALUES=my.yaml hack/kind-up.sh  extra chart values
#   hack/kind-up.sh down       delete the cluster
#
# Needs docker, kind and kubectl on PATH; helm comes from hack/helm/build.sh (bin/helm).
# The test suite can run against the same cluster:
#   kind get kubeconfig --name telco-intent > .local/kind.kubeconfig
#   TEST_KUBECONFIG=$PWD/.local/kind.kubeconfig make test
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cluster=${KIND_CLUSTER:-telco-intent}
namespace=${NAMESPACE:-telco-system}
release=${RELEASE:-telco-intent}
version=$(awk -F'"' '/^appVersion:/{print $2}' "$root/charts/telco-intent/Chart.yaml")
image=${IMAGE:-telco-intent/controller:$version}
context=kind-$cluster

need() { command -v "$1" >/dev/null || { echo "error: $1 is required on PATH ($2)" >&2; exit 1; }; }
need docker "https://docs.docker.com/engine/install/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "or use bin/kubectl from make bin"

if [ "${1:-up}" = down ]; then
  kind delete cluster --name "$cluster"
  exit 0
fi

"$root/hack/helm/build.sh"
helm=$root/bin/helm

if kind get clusters | grep -qx "$cluster"; then
  echo "==> kind cluster $cluster exists"
else
  echo "==> creating kind cluster $cluster"
  kind create cluster --name "$cluster" --wait 120s
fi

echo "==> building $image"
docker build --tag "$image" "$root"
echo "==> loading $image into $cluster"
kind load docker-image "$image" --name "$cluster"

echo "==> installing the chart as $release in $namespace"
repository=${image%:*}
tag=${image##*:}
values=()
if [ -n "${HELM_VALUES:-}" ]; then values=(--values "$HELM_VALUES"); fi
"$helm" upgrade --install "$release" "$root/charts/telco-intent" \
  --kube-context "$context" --namespace "$namespace" --create-namespace \
  --set-string image.repository="$repository" --set-string image.tag="$tag" --set image.pullPolicy=Never \
  ${values[@]+"${values[@]}"} --wait --timeout 5m

echo "==> waiting for the rollout"
selector=app.kubernetes.io/instance=$release
for deployment in $(kubectl --context "$context" --namespace "$namespace" get deployment -l "$selector" -o name); do
  kubectl --context "$context" --namespace "$namespace" rollout status "$deployment" --timeout=180s
done
kubectl --context "$context" --namespace "$namespace" get pods -l "$selector"
echo "==> ready: kubectl --context $context apply -f examples/quickstart/ (devices at 127.0.0.1 are not"
echo "    reachable from the cluster: point spec.address of the NetworkDevices at your routers)"
