#!/usr/bin/env python3
"""Compare Starling with Prosody and ejabberd from shared load-generator result files
(../shared/bench/results/*.json, written by bench.sh) and print a markdown table:
one row per scenario metric, the value of each server (mean over reps, then each rep's
value), Starling's ratio against the better of the two peers, the target from issue #11
and whether it is met.

usage:
  compare.py --prosody P.json [P2.json ...] --ejabberd E.json [...] \\
             --starling S.json [...] [--starling-mam M.json ...] [--starling-pg G.json ...]

  --prosody, --ejabberd  peer result files (bench.sh prosody|ejabberd); several files are
                         merged, runs of the same name count as further reps
  --starling             Starling started with archiving OFF (tests/bench/run.sh, MAM=0);
                         chat-mam-* runs in these files are ignored (bench.sh cannot switch
                         archiving on an external server, so they did not archive)
  --starling-mam         Starling started with MAM=1 (SQLite): only its chat-mam-* runs are used
  --starling-pg          Starling started with MAM=1 STORAGE=postgres: only chat-mam-* runs

Missing runs show as "-". Marks: * = noisy rep (>= 5 CPU-s of other work on the machine
during the run), ! = rep with errors (listed under the table), != = the servers' runs used
different parameters (ratio not like for like).
"""
import argparse
import json
import re
import sys

NOISY_OTHER_CPU_S = 5.0  # as in ../shared/bench/BASELINE.md


def get(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def num(x):
    if x is None:
        return "-"
    a = abs(x)
    nd = 0 if a >= 100 else 1 if a >= 10 else 2
    return f"{x:,.{nd}f}"


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


# ---------------------------------------------------------------- loading

def load(paths, group, expect_server, warnings):
    """name -> list of run records (one per rep, in file order), plus per-file meta."""
    runs, metas = {}, []
    for path in paths:
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as e:
            sys.exit(f"compare.py: cannot read {path}: {e}")
        server = doc.get("server")
        if expect_server and server != expect_server:
            warnings.append(f"{path}: server is {server!r}, passed as --{group}")
        metas.append((path, doc))
        for r in doc.get("runs", []):
            r["_file"] = path.rsplit("/", 1)[-1]
            name = r.get("name", "?")
            is_mam = name.startswith("chat-mam-")
            if group == "starling" and is_mam:
                warnings.append(f"{path}: {name} ignored (archiving-off Starling; pass MAM=1 runs with --starling-mam)")
                continue
            if group in ("starling-mam", "starling-pg") and not is_mam:
                continue
            runs.setdefault(name, []).append(r)
    return runs, metas


def problems(r):
    """Why a rep's figures are suspect (empty list = clean)."""
    res = r.get("result") or {}
    out = []
    if res.get("error"):
        out.append(str(res["error"]))
    failed = get(res, "login", "failed")
    if failed:
        out.append(f"{failed} logins failed")
    if res.get("lost"):
        out.append(f"{res['lost']} messages lost")
    if res.get("error_stanzas"):
        out.append(f"{res['error_stanzas']} error stanzas")
    if res.get("join_errors"):
        out.append(f"{res['join_errors']} room joins failed ({res.get('join_error_sample')})")
    if res.get("scenario") == "muc" and res.get("deliveries") is not None and res.get("deliveries") != res.get("expected"):
        out.append(f"{res.get('deliveries')}/{res.get('expected')} room messages delivered")
    if r.get("server_cpu_s_run") is None:
        out.append("no server CPU/RSS figures (server process gone? another server on the port?)")
    return out


PARAM_KEYS = ("scenario", "clients", "sasl", "starttls", "concurrency", "messages_per_client",
              "window", "rate_cap", "body_size", "settle_s")


def params(r):
    res = r.get("result") or {}
    return tuple((k, res.get(k)) for k in PARAM_KEYS if res.get(k) is not None)


# ---------------------------------------------------------------- metrics

# metric: (label, extractor(result) -> number, higher_is_better)
LOGINS = ("logins/s", lambda res: get(res, "login", "per_s"), True)
KIB = ("KiB/conn (idle session)", lambda res: get(res, "server", "kib_per_conn"), False)
CPU_LOGIN = ("ms server CPU/login", lambda res: get(res, "server", "cpu_ms_per_login"), False)
MSGS = ("msgs/s", lambda res: res.get("msgs_per_s"), True)
CPU_MSG = ("µs server CPU/msg", lambda res: get(res, "server", "cpu_us_per_msg"), False)
P99 = ("p99 latency ms", lambda res: get(res, "latency_ms", "p99"), False)
DELIV = ("deliveries/s", lambda res: res.get("deliveries_per_s"), True)

NAME_RE = [
    ("connect", re.compile(r"connect-(?P<sasl>plain|scram)-(?P<n>\d+)(?P<tls>-tls)?")),
    ("chat-mam", re.compile(r"chat-mam-(?P<n>\d+)(?P<tls>-tls)?")),
    ("chat-paced", re.compile(r"chat-(?P<n>\d+)-rate(?P<rate>\d+)(?P<tls>-tls)?")),
    ("chat", re.compile(r"chat-(?P<n>\d+)(?P<tls>-tls)?")),
    ("muc", re.compile(r"muc-(?P<n>\d+)(?P<tls>-tls)?")),
]
KIND_ORDER = {k: i for i, k in enumerate(("connect", "chat", "chat-paced", "chat-mam", "muc"))}


def parse(name):
    for kind, rx in NAME_RE:
        m = rx.fullmatch(name)
        if m:
            return kind, m.groupdict()
    return None, None


def sort_key(name):
    kind, g = parse(name)
    sasl = 0 if (g or {}).get("sasl") == "plain" else 1
    return (bool((g or {}).get("tls")), KIND_ORDER.get(kind, 99), sasl, int((g or {}).get("n") or 0), name)


def metrics_for(name, largest_connect):
    """[(metric, target)] for a run name; target = (op, factor, text) or None."""
    kind, g = parse(name)
    if kind == "connect":
        scram = g["sasl"] == "scram"
        # Memory per idle session is judged at the largest N (fixed overhead amortised).
        kib_target = (("<=", 1 / 4, "≤ 1/4")
                      if int(g["n"]) == largest_connect.get((g["sasl"], bool(g["tls"]))) else None)
        return [(LOGINS, (">=", 2, "≥ 2×") if scram else None), (KIB, kib_target), (CPU_LOGIN, None)]
    if kind == "chat":
        return [(MSGS, (">=", 5, "≥ 5×")), (CPU_MSG, ("<=", 1 / 5, "≤ 1/5")), (P99, None)]
    if kind == "chat-paced":
        return [(P99, ("<=", 1 / 3, "≤ 1/3")), (CPU_MSG, None)]
    if kind == "chat-mam":
        return [(MSGS, None), (CPU_MSG, None)]
    if kind == "muc":
        return [(DELIV, (">=", 3, "≥ 3×")), (P99, ("<=", 1 / 3, "≤ 1/3"))]
    return []


# ---------------------------------------------------------------- table

class Notes:
    def __init__(self):
        self.items = []

    def add(self, text):
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def cell(reps, extract, group, name, notes):
    """'mean (rep1 / rep2)' with * for noisy and ! for failed reps; returns (text, mean)."""
    if not reps:
        return "-", None
    vals, parts = [], []
    for r in reps:
        v = extract(r.get("result") or {})
        mark = ""
        if (r.get("other_cpu_s_run") or 0) >= NOISY_OTHER_CPU_S:
            mark += "*"
        probs = problems(r)
        if probs:
            mark += "!"
            notes.add(f"{group} {name} ({r['_file']} rep {r.get('rep')}): " + "; ".join(probs))
        vals.append(v)
        parts.append(num(v) + mark)
    m = mean(vals)
    if len(reps) == 1:
        return parts[0], m
    return f"{num(m)} ({' / '.join(parts)})", m


def ratio_text(x, higher):
    if x is None:
        return "-"
    if not higher and 0 < x < 1:
        return f"{x:.2f}× (1/{1 / x:.1f})"
    return f"{x:.2f}×"


def met(x, target):
    if x is None or target is None:
        return "-"
    op, factor, _ = target
    ok = x >= factor if op == ">=" else x <= factor
    return "yes" if ok else "**no**"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for g in ("prosody", "ejabberd", "starling", "starling-mam", "starling-pg"):
        ap.add_argument(f"--{g}", nargs="+", default=[], action="extend", metavar="FILE")
    a = ap.parse_args()
    warnings = []
    data, metas = {}, {}
    for group, expect in (("prosody", "prosody"), ("ejabberd", "ejabberd"), ("starling", None),
                          ("starling-mam", None), ("starling-pg", None)):
        data[group], metas[group] = load(getattr(a, group.replace("-", "_")), group, expect, warnings)
    if not any(data.values()):
        ap.error("no result files given")

    print("## Starling vs Prosody and ejabberd\n")
    for group, ms in metas.items():
        for path, doc in ms:
            reps = sorted({r.get("rep") for r in doc.get("runs", [])})
            print(f"- {group}: `{path}` — {doc.get('version')}, {doc.get('date_utc')} UTC, "
                  f"STARTTLS {doc.get('starttls')}, {len(doc.get('runs', []))} runs, reps {reps}")
    print()

    names = set()
    for group in ("prosody", "ejabberd", "starling", "starling-mam"):
        names |= set(data[group])
    largest = {}
    for n in names:
        kind, g = parse(n)
        if kind == "connect":
            key = (g["sasl"], bool(g["tls"]))
            largest[key] = max(largest.get(key, 0), int(g["n"]))
    for n in sorted(names - {n for n in names if parse(n)[0]}):
        warnings.append(f"run {n}: unknown scenario name, not compared")

    notes = Notes()
    hdr = ("run", "metric", "Prosody", "ejabberd", "Starling", "Starling ÷ better peer", "target", "met")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    counted = [0, 0]  # targets met, targets evaluated

    def row(name, label, cells, ratio, higher, target, mismatch=None):
        rt = ratio_text(ratio, higher)
        if mismatch and ratio is not None:
            rt += " ≠" + notes.add(mismatch)
        m = met(ratio, target)
        if m != "-":
            counted[1] += 1
            counted[0] += m == "yes"
        print("| " + " | ".join([name, label, *cells, rt, target[2] if target else "-", m]) + " |")

    def compare(name, metric, target, starling_group, label_suffix=""):
        label, extract, higher = metric
        texts, means = [], {}
        for group in ("prosody", "ejabberd", starling_group):
            t, m = cell(data[group].get(name, []), extract, group, name, notes)
            texts.append(t)
            means[group] = m
        peers = [means[p] for p in ("prosody", "ejabberd") if means[p] is not None]
        best = (max if higher else min)(peers) if peers else None
        ratio = means[starling_group] / best if best and means[starling_group] is not None else None
        sigs = {}
        for group in ("prosody", "ejabberd", starling_group):
            for r in data[group].get(name, []):
                sigs.setdefault(params(r), set()).add(group)
        mismatch = None
        if len(sigs) > 1:
            dicts = {sig: dict(sig) for sig in sigs}
            keys = [k for k in PARAM_KEYS if len({d.get(k) for d in dicts.values()}) > 1]
            mismatch = f"{name}: runs differ in " + ", ".join(keys) + ": " + "; ".join(
                f"{'/'.join(sorted(gs))} " + ", ".join(f"{k}={dicts[sig].get(k)}" for k in keys)
                for sig, gs in sigs.items())
        row(name, label + label_suffix, texts, ratio, higher, target, mismatch)
        return means

    for name in sorted(names, key=sort_key):
        kind, g = parse(name)
        if not kind:
            continue
        group = "starling-mam" if kind == "chat-mam" else "starling"
        for metric, target in metrics_for(name, largest):
            compare(name, metric, target, group, ", archiving on (Starling: SQLite)" if kind == "chat-mam" else "")
        if kind != "chat-mam":
            continue
        off_name = f"chat-{g['n']}" + ("-tls" if g["tls"] else "")
        variants = [("starling-mam", "SQLite")]
        if data["starling-pg"].get(name):
            for metric, target in metrics_for(name, largest):
                compare(name, metric, target, "starling-pg", ", archiving on (Starling: PostgreSQL)")
            variants.append(("starling-pg", "PostgreSQL"))
        # Archiving on ÷ off: chat-mam-N msgs/s over chat-N msgs/s of the same server.
        for sgroup, storage in variants:
            cells = []
            for group in ("prosody", "ejabberd", sgroup):
                off_group = "starling" if group.startswith("starling") else group
                on = mean([MSGS[1](r.get("result") or {}) for r in data[group].get(name, [])])
                off = mean([MSGS[1](r.get("result") or {}) for r in data[off_group].get(off_name, [])])
                cells.append((on / off) if on is not None and off else None)
            texts = [f"{c:.2f}" if c is not None else "-" for c in cells]
            target = (">=", 0.5, "Starling ≥ 0.5")
            m = met(cells[2], target)
            if m != "-":
                counted[1] += 1
                counted[0] += m == "yes"
            print("| " + " | ".join([f"{name} ÷ {off_name}", f"msgs/s archiving on ÷ off ({storage})",
                                     *texts, "-", target[2], m]) + " |")

    print(f"\nTargets met: {counted[0]} of {counted[1]} evaluated.")
    print("Ratios compare means over reps; \"better peer\" = higher (throughput) or lower "
          "(memory, CPU, latency) of the two peers' means. `*` noisy rep (≥ 5 CPU-s of other work "
          "on the machine during the run), `!` rep with problems, `≠` runs with different parameters.")
    if notes.items:
        print()
        for i, t in enumerate(notes.items, 1):
            print(f"{i}. {t}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


if __name__ == "__main__":
    main()
