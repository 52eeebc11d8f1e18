#!/usr/bin/env bash
# Monitoring as code (deploy/monitoring, issue 15): the Prometheus rules load (`promtool check
# rules`) and their unit tests pass (`promtool test rules`); the Grafana dashboard is valid JSON,
# is what make-dashboard.py writes, and every query parses; every keyless_* metric the rules, their
# tests and the dashboard name is registered by the C code, every metric the code registers is on
# the dashboard, every keyless:* series used is recorded; every alert has a severity, a summary
# and a runbook anchor that is a heading of docs/operations.md. And the checks can fail: an
# unknown metric, a broken alert and a missing anchor are caught.
# Usage: test_monitoring.sh SOURCE_DIR. Exit 77 (skipped) only when promtool is missing
# (Debian: apt-get install prometheus; scripts/install-deps.sh installs it).
set -u
SRC=$(cd "${1:?usage: test_monitoring.sh SOURCE_DIR}" && pwd) || exit 2
if ! command -v promtool >/dev/null 2>&1; then
  echo "SKIP: promtool not found (apt-get install prometheus, or scripts/install-deps.sh): monitoring rules not tested"
  exit 77
fi
. "$(dirname "$0")/harness.sh" monitoring
M="$SRC/deploy/monitoring"
CHECK=(python3 "$M/check-monitoring.py" "$SRC")

# run NAME EXPECTED_RC COMMAND...: the command's exit status, with its output on failure
run() {
  local name="$1" want="$2" out rc
  shift 2
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" = "$want" ]; then pass "$name"; else fail "$name" "exit $want" "exit $rc: $out"; fi
  LAST="$out"
}

run "promtool check rules" 0 promtool check rules "$M/keyless-rules.yml"
check_has "rules: alerts and recording rules found" "SUCCESS" "$LAST"
# promtool test rules resolves rule_files relative to the test file
run "promtool test rules (alerts fire and stay silent as the tests expect)" 0 promtool test rules "$M/keyless-rules.test.yml"
run "dashboard is valid JSON" 0 python3 -m json.tool "$M/grafana-keyless.json"
run "dashboard is what make-dashboard.py writes" 0 python3 "$M/make-dashboard.py" --check
run "dashboard queries as recording rules" 0 "${CHECK[@]}" exprs "$TMP/dashboard-exprs.yml"
run "every dashboard query parses (promtool)" 0 promtool check rules "$TMP/dashboard-exprs.yml"
run "every metric named in the rules, tests and dashboard exists in the code" 0 \
  "${CHECK[@]}" names "$M/keyless-rules.yml" "$M/keyless-rules.test.yml" "$M/grafana-keyless.json"
run "every keyless:* series used is recorded" 0 \
  "${CHECK[@]}" records "$M/keyless-rules.yml" "$M/keyless-rules.test.yml" "$M/grafana-keyless.json"
run "every metric the code registers is on the dashboard" 0 "${CHECK[@]}" coverage
run "every alert: severity, summary, runbook anchor in docs/operations.md" 0 "${CHECK[@]}" alerts
# the alerts issue 15 asks for, by name
alerts=" $(grep -o 'alert: Keyless[A-Za-z]*' "$M/keyless-rules.yml" | cut -c8- | tr '\n' ' ')"
for a in CoreNoLeader CoreFsmFailed CalendarStalled CoreClockNotOk CoreCommitSlow TierParentDown TierAllParentsDown \
  TierParentInvalidAnswers TierRoundsFailing GatewayUpstreamErrors AuthFailures ExtenderNotServing ExtenderDiverged \
  ExtenderLagging ExtenderReplicaWaitsTimingOut ConnectionsAtMax NodePeersRefused CoreRaftMessagesDropped \
  CoreForwardsRefused CoreAnswerMismatch CoreRoundLeavesDropped VersionSkew; do
  check_has "alert Keyless$a is defined" " Keyless$a " "$alerts"
done

# The checks can fail: a copy of the tree's monitoring files and docs, then broken.
mkdir -p "$TMP/src/deploy/monitoring" "$TMP/src/docs" "$TMP/src/core"
cp "$M"/* "$TMP/src/deploy/monitoring/" && cp "$SRC/docs/operations.md" "$TMP/src/docs/"
cp -r "$SRC/core/src" "$TMP/src/core/" && for d in lib gateway extender aggregator; do cp -r "$SRC/$d" "$TMP/src/"; done
B=(python3 "$TMP/src/deploy/monitoring/check-monitoring.py" "$TMP/src")
printf 'groups:\n  - name: x\n    rules:\n      - record: x\n        expr: rate(keyless_no_such_metric_total[5m])\n' >"$TMP/bad.yml"
run "an unknown metric name is refused" 1 "${B[@]}" names "$TMP/bad.yml"
check_has "  ... and named" "keyless_no_such_metric_total: no such metric" "$LAST"
printf 'keyless:no_such:rate1m\n' >"$TMP/bad.txt"
run "an unrecorded keyless:* series is refused" 1 "${B[@]}" records "$TMP/bad.txt"
sed -i 's/^#### Extender diverged$/#### Extender gone astray/' "$TMP/src/docs/operations.md"
run "a runbook anchor that is no heading is refused" 1 "${B[@]}" alerts
check_has "  ... and named" "KeylessExtenderDiverged: runbook anchor #extender-diverged" "$LAST"
cp "$SRC/docs/operations.md" "$TMP/src/docs/"
sed -i '0,/labels: {severity: page}/s//labels: {severity: urgent}/' "$TMP/src/deploy/monitoring/keyless-rules.yml"
run "an alert without severity page or ticket is refused" 1 "${B[@]}" alerts
sed -i 's/keyless_core_proposals_total/keyless_core_proposals_totally/' "$TMP/src/deploy/monitoring/grafana-keyless.json"
run "a metric on no panel is reported" 1 "${B[@]}" coverage
check_has "  ... and named" "keyless_core_proposals_total is on no panel" "$LAST"
run "a hand-edited dashboard is reported" 1 python3 "$TMP/src/deploy/monitoring/make-dashboard.py" --check
# promtool test rules fails when an alert's rule is wrong (the tests have teeth)
sed -i 's/keyless_extender_replication_diverged == 1/keyless_extender_replication_diverged == 2/' \
  "$TMP/src/deploy/monitoring/keyless-rules.yml"
sed -i 's/labels: {severity: urgent}/labels: {severity: page}/' "$TMP/src/deploy/monitoring/keyless-rules.yml"
run "promtool test rules fails on a broken alert" 1 promtool test rules "$TMP/src/deploy/monitoring/keyless-rules.test.yml"
check_has "  ... naming it" "KeylessExtenderDiverged" "$LAST"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
