#!/usr/bin/env bash
# Build helm from the Go module pinned in go.mod into bin/, only when the binary is
# missing or does not report that release. helm v3's command is a main package
# (helm.sh/helm/v3/cmd/helm) that Go cannot import, so go.mod pins it with a `tool`
# directive and we build that package directly; the version stamps mirror helm's Makefile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${BIN_DIR:-$root/bin}
helm=$(awk '$1=="helm.sh/helm/v3"{print $2; exit}' "$here/go.mod")

if [ -x "$out/helm" ] && [ "$("$out/helm" version --template '{{.Version}}' 2>/dev/null)" = "$helm" ]; then
  echo "==> helm is current ($helm) in $out"
  exit 0
fi

"$root/hack/localcluster/ensure-go.sh"
cd "$here"
# helm's default Kubernetes version for `helm template`/`lint` follows the client-go it was built with.
kube=$(GOTOOLCHAIN=${GOTOOLCHAIN:-auto} go list -m -f '{{.Version}}' k8s.io/client-go)
kube_minor=${kube#v0.}; kube_minor=${kube_minor%%.*}
echo "==> building helm $helm from its Go module into $out"
echo "    (the first build compiles helm and its dependencies: 2-3 minutes on 2 cores; later runs take"
echo "     seconds; a progress line follows every 15 s)"
mkdir -p "$out"
start=$(date +%s)
"$root/hack/progress.sh" "go build helm" \
  env GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0 go build -v -trimpath -ldflags "-s -w \
  -X helm.sh/helm/v3/internal/version.version=$helm \
  -X helm.sh/helm/v3/internal/version.metadata= \
  -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kube_minor \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor" \
  -o "$out/helm" helm.sh/helm/v3/cmd/helm
echo "==> built in $(( $(date +%s) - start ))s: helm $("$out/helm" version --template '{{.Version}}')"
