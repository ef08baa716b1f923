#!/usr/bin/env bash
# progress.sh LABEL COMMAND...: run COMMAND with its output in a log and print a line at
# least every 15 s (elapsed time and the command's latest output line), so a cold Go build
# that stays quiet for minutes still shows that it is alive and what it is doing.
# Exits with COMMAND's status; on failure prints the end of the log.
set -uo pipefail
label=$1; shift
interval=${PROGRESS_INTERVAL:-15}
log=$(mktemp "${TMPDIR:-/tmp}/progress.XXXXXX")
trap 'rm -f "$log"' EXIT
start=$(date +%s)
"$@" >"$log" 2>&1 &
pid=$!
# Forward Ctrl-C/TERM to the build instead of leaving it running on its own.
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"; exit 130' INT TERM
while kill -0 "$pid" 2>/dev/null; do
  for ((i = 0; i < interval * 2; i++)); do
    kill -0 "$pid" 2>/dev/null || break 2
    sleep 0.5
  done
  elapsed=$(( $(date +%s) - start ))
  last=$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-100)
  lines=$(grep -c . "$log")
  printf '    %s: %dm%02ds elapsed, %d steps so far; now: %s\n' \
    "$label" $((elapsed / 60)) $((elapsed % 60)) "$lines" "${last:-starting}"
done
wait "$pid"; rc=$?
if [ "$rc" -ne 0 ]; then
  echo "error: $label failed (exit $rc); the last lines of its output:" >&2
  tail -n 40 "$log" >&2
fi
exit "$rc"
