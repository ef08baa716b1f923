#!/usr/bin/env bash
# Copy the generated CRDs (crds/*.yaml, from `make crds`) into the Helm chart's crds/ directory,
# adding only the Argo CD annotations: sync wave -2 (before RBAC's consumers and the controller)
# and Prune=false/Delete=false, so removing the chart from Git never deletes the CRDs and with them
# every Subscription and Invoice (the billing data). tests/integration/test_chart.py checks the
# copies are current. Usage: hack/sync-chart-crds.sh [OUTPUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/charts/telco-intent/crds}
mkdir -p "$out"
count=0
for src in "$root"/crds/*.yaml; do
  name=$(basename "$src")
  awk -v file="crds/$name" '
    NR == 1 && /^# / { print "# Copied from " file " by hack/sync-chart-crds.sh; do not edit by hand."; next }
    { print }
    /^metadata:$/ { in_meta = 1; next }
    in_meta && /^  name: / {
      print "  annotations:"
      print "    argocd.argoproj.io/sync-wave: \"-2\""
      print "    argocd.argoproj.io/sync-options: Prune=false,Delete=false,ServerSideApply=true"
      in_meta = 0; done = 1
    }
    END { if (!done) { print "no metadata.name in " file > "/dev/stderr"; exit 1 } }
  ' "$src" > "$out/$name.tmp"
  mv "$out/$name.tmp" "$out/$name"
  count=$((count + 1))
done
# Drop copies whose source is gone (the peering CRDs are the chart's own and stay).
for copy in "$out"/*.telco.intent.dev.yaml; do
  [ -e "$root/crds/$(basename "$copy")" ] || rm -f "$copy"
done
echo "==> $count CRDs copied into ${out#"$root"/}"
