#!/usr/bin/env python3
"""Prints every query of a Grafana dashboard (panels' targets, annotations) as a
Prometheus rule file of recording rules, so `promtool check rules` parses them all.
The dashboard's variables ($pool, $__all, ...) are given the value `.*`.

Usage: python3 scripts/dashboard-queries.py monitoring/grafana-dashboard.json
"""
import json
import re
import sys


def queries(dashboard):
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield annotation["name"], annotation["expr"]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        dashboard = json.load(f)
    print("groups:\n  - name: dashboard-queries\n    rules:")
    count = 0
    for title, expr in queries(dashboard):
        expr = re.sub(r"\$\{?[A-Za-z_]+\}?", ".*", expr)
        count += 1
        print(f"      - record: dashboard:query{count}")
        print(f"        expr: {json.dumps(expr)}")
        print(f"        labels: {{panel: {json.dumps(title)}}}")
    if count == 0:
        sys.exit("no query found in " + sys.argv[1])


if __name__ == "__main__":
    main()
