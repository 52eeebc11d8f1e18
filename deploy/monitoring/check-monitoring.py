#!/usr/bin/env python3
"""Checks the monitoring files against the code and the docs (owner: operations; issue 15).

  check-monitoring.py SRC names FILE...     every keyless_* metric named in FILEs is registered by
                                             the C code under SRC (_bucket/_sum/_count stripped)
  check-monitoring.py SRC records FILE...   every keyless:* recording rule used in FILEs is
                                             recorded by deploy/monitoring/keyless-rules.yml
  check-monitoring.py SRC coverage          every metric the code registers is on the dashboard
  check-monitoring.py SRC alerts            every alert has severity page or ticket, a summary
                                             and a runbook whose anchor is a heading of
                                             docs/operations.md
  check-monitoring.py SRC exprs OUT         writes the dashboard's queries as recording rules to
                                             OUT, for `promtool check rules` to parse them

Prints one line per problem and exits 1 when there is any. No third-party modules (python3 only).
"""
import json
import os
import re
import sys

C_DIRS = ("aggregator", "calendar", "cli", "core", "extender", "gateway", "lib")
NAME = re.compile(r"keyless_[a-z0-9_]+")
RECORD = re.compile(r"keyless:[a-z0-9_:]+")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def registered(src):
    """Metric names as string literals in the C sources (what kl_metrics_* registers)."""
    names = set()
    for d in C_DIRS:
        for root, _, files in os.walk(os.path.join(src, d)):
            for f in files:
                if f.endswith((".c", ".h")):
                    names.update(re.findall(r'"(keyless_[a-z0-9_]+)"', read(os.path.join(root, f))))
    return names


def base(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def slug(heading):
    """The anchor GitHub makes of a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def dashboard_exprs(src):
    d = json.loads(read(os.path.join(src, "deploy/monitoring/grafana-keyless.json")))
    return [t["expr"] for p in d["panels"] for t in p.get("targets", [])]


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    src, what, args = argv[1], argv[2], argv[3:]
    problems = []
    known = registered(src)
    if not known:
        sys.exit(f"check-monitoring: no metric registered under {src}: wrong source directory?")
    if what == "names":
        for path in args:
            for n in sorted(set(NAME.findall(read(path)))):
                if base(n) not in known and n not in known:
                    problems.append(f"{path}: {n}: no such metric in the C code")
    elif what == "records":
        rules = read(os.path.join(src, "deploy/monitoring/keyless-rules.yml"))
        recorded = set(re.findall(r"^\s*- record:\s*(\S+)\s*$", rules, re.M))
        for path in args:
            for r in sorted(set(RECORD.findall(read(path)))):
                if r not in recorded:
                    problems.append(f"{path}: {r}: no such recording rule in keyless-rules.yml")
    elif what == "coverage":
        shown = {base(n) for e in dashboard_exprs(src) for n in NAME.findall(e)}
        rules = read(os.path.join(src, "deploy/monitoring/keyless-rules.yml"))
        shown |= {base(n) for n in NAME.findall(rules)}  # the dashboard shows what it records
        for n in sorted(known - shown):
            problems.append(f"grafana-keyless.json: metric {n} is on no panel")
    elif what == "alerts":
        anchors = {slug(m) for m in re.findall(r"^#+ (.*)$", read(os.path.join(src, "docs/operations.md")), re.M)}
        rules = read(os.path.join(src, "deploy/monitoring/keyless-rules.yml"))
        blocks = re.split(r"^\s*- (?=alert:|record:|name:)", rules, flags=re.M)
        alerts = [b for b in blocks if b.startswith("alert:")]
        if not alerts:
            problems.append("keyless-rules.yml: no alert")
        for b in alerts:
            name = b.split()[1]
            if not re.search(r"severity: (page|ticket)\b", b):
                problems.append(f"{name}: no severity page or ticket")
            if not re.search(r"^\s+summary: \S", b, re.M):
                problems.append(f"{name}: no summary")
            m = re.search(r"^\s+runbook: docs/operations\.md#(\S+)\s*$", b, re.M)
            if m is None:
                problems.append(f"{name}: no runbook docs/operations.md#ANCHOR")
            elif m.group(1) not in anchors:
                problems.append(f"{name}: runbook anchor #{m.group(1)} is no heading of docs/operations.md")
    elif what == "exprs" and len(args) == 1:
        lines = ["groups:", "  - name: dashboard", "    rules:"]
        for i, e in enumerate(dashboard_exprs(src)):
            e = e.replace("$job", ".*")
            lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(e)}"]
        with open(args[0], "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    else:
        sys.exit(__doc__)
    for p in problems:
        print(f"check-monitoring: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
