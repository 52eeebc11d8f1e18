#!/usr/bin/env python3
"""Writes grafana-keyless.json, the Grafana dashboard of a keyless network (owner: operations).

  python3 deploy/monitoring/make-dashboard.py          rewrite grafana-keyless.json beside this file
  python3 deploy/monitoring/make-dashboard.py --check  exit 1 when the JSON is not what this writes

The panels live here, not in the JSON: edit this file and run it (tests/system/test_monitoring.sh
runs --check, so the two never drift apart). Every query takes the $datasource and $job variables;
the metric names are checked against the C code by the same test.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "grafana-keyless.json")
J = 'job=~"$job"'

# (row title, [(panel title, kind, unit, [(expr, legend)], description)])
# kind: ts (time series), stat (current value), table (instant, one row per series)
ROWS = [
    ("Overview", [
        ("Core leaders", "stat", "none", [(f'count by (job) (keyless_core_raft_role{{{J}}} == 3)', "{{job}}")],
         "Core nodes that are leader now: 1 per cluster (0: no leader, KeylessCoreNoLeader)."),
        ("Calendar behind now", "stat", "s", [(f'time() - max by (job) (keyless_core_calendar_last{{{J}}})', "{{job}}")],
         "Seconds since the last committed second of the best core node."),
        ("Signatures/s", "stat", "reqps", [(f'sum(keyless:gateway_signatures:rate1m{{{J}}})', "all gateways")],
         "Aggregation requests answered 0x0000 per second, all gateways (recording rule)."),
        ("Parents down", "stat", "none", [(f'count(keyless_tier_parent_up{{{J}}} == 0) or vector(0)', "links")],
         "Gateway and aggregator links to a parent that are down."),
        ("Extenders serving", "stat", "none",
         [(f'sum(keyless_extender_serving{{{J}}})', "serving"), (f'count(keyless_extender_serving{{{J}}})', "of")],
         "Extenders that answer extension requests, of all extenders scraped."),
        ("Versions per job", "stat", "none", [(f'count by (job) (count by (job, version) (keyless_build_info{{{J}}}))', "{{job}}")],
         "More than 1 for long: an unfinished rolling upgrade (KeylessVersionSkew)."),
    ]),
    ("Core", [
        ("Raft role", "ts", "none", [(f'keyless_core_raft_role{{{J}}}', "{{instance}}")],
         "0 unavailable, 1 follower, 2 candidate, 3 leader."),
        ("Raft term", "ts", "none", [(f'keyless_core_raft_term{{{J}}}', "{{instance}}")],
         "Rising by more than a few per hour: election storms."),
        ("Commit and applied index", "ts", "none",
         [(f'keyless_core_raft_commit_index{{{J}}}', "commit {{instance}}"),
          (f'keyless_core_raft_applied_index{{{J}}}', "applied {{instance}}")], ""),
        ("Calendar last second", "ts", "none", [(f'keyless_core_calendar_last{{{J}}}', "{{instance}}")],
         "Last committed second: advances by about 1 per second."),
        ("Commit lag", "ts", "s", [(f'keyless_core_commit_lag_seconds{{{J}}}', "{{instance}}")],
         "Now minus the last committed second, per node."),
        ("Commit latency (leader)", "ts", "s",
         [(f'keyless:core_commit_seconds:p99_5m{{{J}}}', "p99 {{job}}"),
          (f'histogram_quantile(0.5, sum by (job, le) (rate(keyless_core_commit_seconds_bucket{{{J}}}[5m])))',
           "p50 {{job}}")],
         "A round's proposal to its commit on the leader (durable on a quorum, fsync included); alert over 0.5 s."),
        ("Apply time (leader)", "ts", "s",
         [(f'histogram_quantile(0.99, sum by (job, le) (rate(keyless_core_apply_seconds_bucket{{{J}}}[5m])))', "p99 {{job}}"),
          (f'histogram_quantile(0.5, sum by (job, le) (rate(keyless_core_apply_seconds_bucket{{{J}}}[5m])))', "p50 {{job}}")],
         "The leader applying a committed round: calendar append, the round's tree, the answers to its own "
         "requests. Grows with the requests per round; near 0.5 s the leader's CPU is the limit."),
        ("Audit log", "ts", "none",
         [(f'sum by (instance) (increase(keyless_core_audit_records_total{{{J}}}[5m]))', "records {{instance}}"),
          (f'sum by (instance) (increase(keyless_core_audit_signed_total{{{J}}}[5m]))', "signed {{instance}}"),
          (f'keyless_core_audit_records_total{{{J}}} - keyless_core_audit_signed_total{{{J}}}', "unsigned {{instance}}"),
          (f'sum by (instance) (increase(keyless_core_audit_sign_failures_total{{{J}}}[5m]))', "sign failures {{instance}}"),
          (f'sum by (instance) (increase(keyless_core_audit_write_failures_total{{{J}}}[5m]))', "write failures {{instance}}")],
         "Administrative events written to each core's audit log and signed through [audit] gateway, per "
         "5 minutes; unsigned: written since start and not signed yet (retried with backoff). Any write "
         "failure is serious: the event was not acknowledged (docs/operations.md, The audit log)."),
        ("FSM state and clock", "ts", "none",
         [(f'keyless_core_fsm_state{{{J}}}', "fsm {{instance}}"), (f'keyless_core_clock_ok{{{J}}}', "clock ok {{instance}}")],
         "FSM 0 ok, 1 catching up, 2 failed; clock ok 0: off by more than max_skew."),
        ("Calendar-auth keys", "table", "none",
         [(f'keyless_core_calendar_auth_key_info{{{J}}} == 1', "{{instance}} {{state}} {{cert_id}}"),
          (f'keyless_core_calendar_auth_next_seconds{{{J}}}', "{{instance}} next in (s)")],
         "Per core: the certificate id of the key signing now (state active) and of a next key (state "
         "next), and the seconds until the next key starts (-1: none). Every core shows the same ids "
         "(docs/keys.md, Rotating the calendar-auth key)."),
        ("Clocks: skew from quorum time, host discipline", "ts", "s",
         [(f'keyless_core_clock_skew_seconds{{{J}}}', "skew {{instance}}"),
          (f'keyless_clock_max_error_seconds{{{J}}}', "max error {{instance}}"),
          (f'keyless_clock_synchronized{{{J}}}', "synchronized {{instance}}")],
         "Skew: this node's clock minus the cluster's quorum time (refused past max_skew). Max error and "
         "synchronized: the kernel's view of the host clock (NTP/chrony), every process."),
        ("Requests and answers", "ts", "reqps",
         [(f'sum by (instance) (rate(keyless_core_requests_total{{{J}}}[1m]))', "requests {{instance}}"),
          (f'sum by (instance, result) (rate(keyless_core_answers_total{{{J}}}[1m]))', "{{result}} {{instance}}")],
         "Top-level requests and their answers: ok, retry, rejected, mismatch."),
        ("Rounds, proposals, pending, forwards", "ts", "none",
         [(f'sum by (instance) (rate(keyless_core_rounds_total{{{J}}}[1m]))', "rounds/s {{instance}}"),
          (f'sum by (instance) (rate(keyless_core_proposals_total{{{J}}}[1m]))', "proposals/s {{instance}}"),
          (f'sum by (instance, when) (rate(keyless_core_seconds_closed_total{{{J}}}[1m]))', "closed ({{when}})/s {{instance}}"),
          (f'keyless_core_requests_pending{{{J}}}', "pending {{instance}}"),
          (f'sum by (instance) (rate(keyless_core_forwards_total{{{J}}}[1m]))', "forwards/s {{instance}}"),
          (f'sum by (instance) (rate(keyless_core_forwards_failed_total{{{J}}}[1m]))', "forwards failed/s {{instance}}")],
         "closed (members): the leader proposed a second once every other member said it closed it; "
         "(grace): at the grace, a member silent or slow (every signature waits the grace then)."),
        ("Forwards refused", "ts", "reqps",
         [(f'sum by (instance, reason) (rate(keyless_core_forwards_refused_total{{{J}}}[5m]))', "{{reason}} {{instance}}")],
         "Any but not_leader is worth a look; limit: max_pending reached."),
        ("Raft guard", "ts", "none",
         [(f'sum by (instance, reason) (increase(keyless_core_raft_messages_dropped_total{{{J}}}[5m]))',
           "dropped {{reason}} {{instance}}"),
          (f'increase(keyless_core_raft_peers_refused_total{{{J}}}[5m])', "peers refused {{instance}}"),
          (f'increase(keyless_core_raft_links_total{{{J}}}[5m])', "links opened {{instance}}"),
          (f'increase(keyless_core_heartbeats_refused_total{{{J}}}[5m])', "heartbeats refused {{instance}}"),
          (f'increase(keyless_core_round_leaves_dropped_total{{{J}}}[5m])', "leaves dropped {{instance}}")],
         "Per 5 minutes."),
        ("Requests per round", "ts", "none",
         [(f'histogram_quantile(0.99, sum by (job, le) (rate(keyless_core_round_requests_bucket{{{J}}}[5m])))', "p99 {{job}}")],
         ""),
    ]),
    ("Tiers: gateways and aggregators", [
        ("Rounds by outcome", "ts", "ops",
         [(f'sum by (instance, tier, outcome) (rate(keyless_tier_rounds_total{{{J}}}[1m]))', "{{outcome}} {{instance}}"),
          (f'sum by (instance, tier) (rate(keyless_tier_rounds_closed_full_total{{{J}}}[1m]))',
           "closed full {{tier}} {{instance}}")],
         "answered, failed, timeout; closed full: rounds closed before their period because they held "
         "max_requests (a new round opens at once; tier gateway_worker: the subtrees of a gateway with "
         "[gateway] threads > 1): steadily above 0, raise max_requests or add a tier node."),
        ("Rounds failed or timed out", "ts", "percentunit",
         [(f'keyless:tier_rounds_failed:ratio_5m{{{J}}}', "{{instance}}")], ""),
        ("Parent up", "ts", "none",
         [(f'keyless_tier_parent_up{{{J}}}', "{{instance}} -> {{parent}}"),
          (f'sum by (instance, parent) (increase(keyless_tier_parent_silences_total{{{J}}}[5m]))',
           "silent {{instance}} -> {{parent}}")],
         "1 while the parent answers heartbeats and is ready; silent: links closed because it answered "
         "nothing within heartbeat_timeout (5 min)."),
        ("Parent latency", "ts", "s",
         [(f'keyless:tier_parent_latency_seconds:p99_5m{{{J}}}', "p99 {{instance}}"),
          (f'histogram_quantile(0.5, sum by (instance, le) (rate(keyless_tier_parent_latency_seconds_bucket{{{J}}}[5m])))',
           "p50 {{instance}}")],
         "From a round's close to its parent's valid answer."),
        ("Parent answers", "ts", "ops",
         [(f'sum by (instance, parent, outcome) (rate(keyless_tier_parent_answers_total{{{J}}}[5m]))',
           "{{outcome}} {{instance}} -> {{parent}}")],
         "used, late, error, invalid (invalid: a parent answers wrong chains)."),
        ("Requests held and refused", "ts", "none",
         [(f'keyless_tier_requests_held{{{J}}}', "held {{instance}}"),
          (f'sum by (instance, status) (rate(keyless_tier_requests_refused_total{{{J}}}[5m]))', "refused/s {{status}} {{instance}}")],
         "Refused at once: 0x0104 level, 0x0105 quota, 0x0106 full."),
        ("Requests per round", "ts", "none",
         [(f'histogram_quantile(0.5, sum by (instance, le) (rate(keyless_tier_round_requests_bucket{{{J}}}[5m])))', "p50 {{instance}}")],
         ""),
        ("Aggregator requests", "ts", "reqps",
         [(f'sum by (instance, status) (rate(keyless_aggregator_requests_total{{{J}}}[1m]))', "{{status}} {{instance}}"),
          (f'rate(keyless_aggregator_bad_frames_total{{{J}}}[5m])', "bad frames {{instance}}")],
         "Children's requests by KSI status."),
    ]),
    ("Gateways", [
        ("Signatures/s by status", "ts", "reqps",
         [(f'keyless:gateway_requests:rate1m{{{J}}}', "{{status}} {{instance}}")],
         "Client requests by final KSI status: 0x0300/0x0301 upstream trouble."),
        ("PDUs by status", "ts", "ops",
         [(f'sum by (instance, transport, status) (rate(keyless_gateway_pdus_total{{{J}}}[1m]))',
           "{{status}} {{transport}} {{instance}}")],
         "PDU-level status: 0x0102 authentication failures, 0x0103 garbage."),
        ("PDU duration", "ts", "s",
         [(f'keyless:gateway_pdu_duration_seconds:p99_5m{{{J}}}', "p99 {{instance}}"),
          (f'histogram_quantile(0.5, sum by (instance, transport, le) '
           f'(rate(keyless_gateway_pdu_duration_seconds_bucket{{{J}}}[5m])))', "p50 {{transport}} {{instance}}")],
         "Request to response at the gateway."),
        ("Parents up, users", "ts", "none",
         [(f'keyless_gateway_parents_up{{{J}}}', "parents {{instance}}"), (f'keyless_gateway_users{{{J}}}', "users {{instance}}")],
         ""),
        ("Signatures withheld: dated after now", "ts", "ops",
         [(f'rate(keyless_gateway_future_signatures_total{{{J}}}[5m])', "{{instance}}")],
         "Answers whose second had not begun on the gateway's clock (a clock is wrong); always 0 when healthy."),
        ("Worker roots late (threads > 1)", "ts", "ops",
         [(f'rate(keyless_gateway_worker_roots_late_total{{{J}}}[5m])', "{{instance}}")],
         "A worker loop's subtree root that came after its gateway round had closed at the deadline (the "
         "tier's close plus the margin): it joined the next round, a period later. Steadily above 0: the "
         "gateway's loops are starved of CPU."),
    ]),
    ("Extenders", [
        ("Requests by status", "ts", "reqps",
         [(f'keyless:extender_requests:rate1m{{{J}}}', "{{status}} {{instance}}")],
         "0x0201/0x0202: calendar missing or corrupt."),
        ("PDUs by status", "ts", "ops",
         [(f'sum by (instance, transport, status) (rate(keyless_extender_pdus_total{{{J}}}[1m]))',
           "{{status}} {{transport}} {{instance}}")], ""),
        ("PDU duration", "ts", "s",
         [(f'histogram_quantile(0.99, sum by (instance, le) (rate(keyless_extender_pdu_duration_seconds_bucket{{{J}}}[5m])))',
           "p99 {{instance}}")], ""),
        ("Replication lag", "ts", "s",
         [(f'keyless_extender_replication_lag_seconds{{{J}}}', "behind cores or clock {{instance}}"),
          (f'keyless_extender_replica_lag_seconds{{{J}}}', "now - last second {{instance}}")],
         "Behind the best core's committed second or the clock (-1: not following); over max_lag it stops serving."),
        ("Upstream cores", "ts", "none",
         [(f'keyless_extender_upstream_up{{{J}}}', "up {{upstream}} {{instance}}"),
          (f'keyless_extender_upstream_following{{{J}}}', "followed {{upstream}} {{instance}}"),
          (f'sum by (instance, reason) (increase(keyless_extender_upstream_switches_total{{{J}}}[5m]))',
           "switches ({{reason}}) {{instance}}")],
         "Each core of [replication] upstream/upstream1..8: up 0 when silent for silence_timeout; the followed "
         "one is dropped when down, silent or behind another."),
        ("Serving, diverged, calendar", "ts", "none",
         [(f'keyless_extender_serving{{{J}}}', "serving {{instance}}"),
          (f'keyless_extender_replication_diverged{{{J}}}', "diverged {{instance}}"),
          (f'keyless_calendar_up{{{J}}}', "calendar up {{instance}}"),
          (f'increase(keyless_extender_replication_refused_total{{{J}}}[5m])', "batches refused {{instance}}")],
         "Diverged 1: do not just restart, compare the calendars first."),
        ("Calendar seconds", "ts", "none",
         [(f'keyless_calendar_last_second{{{J}}}', "last {{instance}}"),
          (f'keyless_calendar_genesis_second{{{J}}}', "genesis {{instance}}")], ""),
        ("Replica waits", "ts", "none",
         [(f'sum by (instance, result) (rate(keyless_extender_replica_waits_total{{{J}}}[5m]))', "{{result}}/s {{instance}}"),
          (f'keyless_extender_replica_waiting{{{J}}}', "waiting {{instance}}")],
         "Requests held for a second the replica did not have yet; timeout or full: it lags more than the wait covers."),
        ("Workers", "ts", "none",
         [(f'keyless_extender_workers{{{J}}}', "workers {{instance}}"),
          (f'keyless_extender_pdus_in_progress{{{J}}}', "in progress {{instance}}"),
          (f'keyless_extender_users{{{J}}}', "users {{instance}}")], ""),
    ]),
    ("Network (every daemon)", [
        ("Connections open", "ts", "none", [(f'keyless_net_connections_open{{{J}}}', "{{server}} {{instance}}")],
         "Near max_connections: raise it or add a daemon."),
        ("Connections accepted", "ts", "cps",
         [(f'sum by (instance, server) (rate(keyless_net_connections_accepted_total{{{J}}}[1m]))', "{{server}} {{instance}}")], ""),
        ("Refused: limits", "ts", "cps",
         [(f'rate(keyless_net_connections_rejected_total{{{J}}}[5m]) > 0', "max_connections {{server}} {{instance}}"),
          (f'rate(keyless_net_connections_address_refused_total{{{J}}}[5m]) > 0', "per address {{server}} {{instance}}"),
          (f'rate(keyless_net_rate_limited_total{{{J}}}[5m]) > 0', "rate limited {{server}} {{instance}}")],
         "Only the series above 0 are drawn."),
        ("TLS peers refused", "ts", "cps",
         [(f'rate(keyless_net_peers_refused_total{{{J}}}[5m]) > 0', "{{server}} {{instance}}")],
         "Any on a node port (internal, replication, children, core admin) is worth a look."),
        ("Bad input", "ts", "cps",
         [(f'rate(keyless_net_bad_input_total{{{J}}}[5m]) > 0', "{{server}} {{instance}}")],
         "Unparseable or oversized requests, framing errors."),
        ("HTTP responses", "ts", "reqps",
         [(f'sum by (instance, server, class) (rate(keyless_http_responses_total{{{J}}}[1m]))', "{{class}} {{server}} {{instance}}")],
         ""),
    ]),
    ("Builds", [
        ("Build info", "table", "none", [(f'keyless_build_info{{{J}}}', "")],
         "Which build every process runs (keyless_build_info{version,commit,openssl,libuv})."),
    ]),
]

DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, kind, unit, queries, desc, x, y, w, h):
    targets = []
    for i, (expr, legend) in enumerate(queries):
        t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": chr(ord("A") + i)}
        if kind == "table":
            t.update({"instant": True, "range": False, "format": "table"})
        targets.append(t)
    p = {"id": pid, "type": {"ts": "timeseries", "stat": "stat", "table": "table"}[kind], "title": title,
         "description": desc, "datasource": DS, "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}}
    if kind == "ts":
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "none", "textMode": "auto"}
    else:
        p["options"] = {"showHeader": True}
        p["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}]
    return p


def dashboard():
    panels, pid, y = [], 1, 0
    for row, items in ROWS:
        panels.append({"id": pid, "type": "row", "title": row, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                       "panels": []})
        pid, y = pid + 1, y + 1
        w, h = (4, 4) if row == "Overview" else (24, 8) if len(items) == 1 else (8, 8)
        for i, (title, kind, unit, queries, desc) in enumerate(items):
            per_row = 24 // w
            panels.append(panel(pid, title, kind, unit, queries, desc, (i % per_row) * w, y + (i // per_row) * h, w, h))
            pid += 1
        y += ((len(items) + 24 // w - 1) // (24 // w)) * h
    var_ds = {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
              "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}
    var_job = {"name": "job", "label": "Job", "type": "query", "datasource": DS,
               "query": {"query": "label_values(keyless_build_info, job)", "refId": "job"},
               "definition": "label_values(keyless_build_info, job)", "multi": True, "includeAll": True,
               "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1, "hide": 0,
               "regex": "", "options": []}
    return {"title": "keyless", "uid": "keyless-overview", "description":
            "Every keyless daemon: core, aggregators, gateways, extenders (deploy/monitoring, docs/operations.md).",
            "tags": ["keyless"], "timezone": "utc", "schemaVersion": 38, "version": 1, "editable": True,
            "graphTooltip": 1, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
            "templating": {"list": [var_ds, var_job]}, "annotations": {"list": []}, "links": [], "panels": panels}


def main():
    text = json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        with open(OUT, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit("make-dashboard: grafana-keyless.json is not what make-dashboard.py writes: run it")
        return
    if sys.argv[1:]:
        sys.exit("usage: make-dashboard.py [--check]")
    tmp = OUT + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, OUT)


if __name__ == "__main__":
    main()
