"""Render bench/results/*.json as the Markdown tables of docs/performance.md.

    .venv/bin/python bench/report.py > /tmp/figures.md
    .venv/bin/python bench/report.py --json docs/performance-results.json --doc docs/performance.md

Prints one section per benchmark found, with the machine and the load average at its start,
so the document is pasted from the measurements rather than typed. `--json` writes every
result into one file (the copy kept in the repository; bench/results/ is not committed);
`--doc` replaces what lies between the figures markers of that document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

PUBLISHED = common.ROOT / "docs" / "performance-results.json"


def load(name: str) -> dict[str, Any] | None:
    """This machine's latest result of a benchmark, else the one published in docs/."""
    path = common.RESULTS / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    if PUBLISHED.exists():
        return json.loads(PUBLISHED.read_text()).get(name)
    return None


def ingest_variants() -> list[str]:
    """The ingest runs with a stored registry document, here or published."""
    found = {p.stem for p in common.RESULTS.glob("ingest_manifest*.json")}
    if PUBLISHED.exists():
        found |= {name for name in json.loads(PUBLISHED.read_text()) if name.startswith("ingest_manifest")}
    return sorted(found)


def f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def md(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def when(data: dict[str, Any]) -> str:
    m = data.get("machine_at_start") or {}
    end = data.get("machine_at_end") or {}
    return (
        f"*Run {m.get('date', '?')} UTC, `{data['command']}`, {data['wall_seconds']} s; "
        f"load average at start {' '.join(m.get('loadavg', []))}, "
        f"at end {' '.join(end.get('loadavg', []))}.*\n"
    )


def downtime_section(heading: str, d: dict[str, Any]) -> list[str]:
    return [
        heading,
        when(d),
        md(
            [
                [s["step"], s["state"], f(s["seconds"], 2), f(s["start"], 2), f(s["end"], 2)]
                for s in d["steps"]
            ],
            ["step", "state", "seconds", "from (s after the click)", "to"],
        ),
        "",
        md(
            [
                [
                    f(w["start"], 2),
                    f(w["end"], 2),
                    f(w["seconds"], 2),
                    ", ".join(w["steps"]),
                    "; ".join(
                        f"{what} x{a['probes']} ({a['first']}-{a['last']} s)"
                        for what, a in w["answers"].items()
                    )
                    if isinstance(w["answers"], dict)
                    else "; ".join(w["answers"]),
                ]
                for w in d["failure_windows"]
            ]
            or [["—", "—", "0", "—", "no probe failed"]],
            ["failing from (s)", "to", "seconds", "during", "what the prober got"],
        ),
        f"\nUpdate {d['from_version']} → {d['to_version']}: **{d['outcome']}** "
        f"in {f(d['update_seconds'])} s; "
        f"{d['probes']} probes, {d['failed_probes']} failed; **longest continuous failure "
        f"{f(d['longest_failure_s'], 2)} s** (target < 5 s: **{'met' if d['met'] else 'missed'}**).\n",
    ]


def requests_section(heading: str, d: dict[str, Any]) -> list[str]:
    """Issue 18's format: several updates, three probers each (bench/downtime.py today)."""
    out = [heading, when(d)]
    for u in d["updates"]:
        label = f"{u['from_version']} → {u['to_version']}" + (
            f", broken at {u['breakage']}" if u["breakage"] else ""
        )
        out += [
            f"**Update {label}: {u['outcome']}**, click → final state {f(u['request_to_end_seconds'])} s.\n",
            md(
                [
                    [s["step"], s["state"], f(s["seconds"], 2), f(s["start"], 2), f(s["end"], 2)]
                    for s in u["steps"]
                ],
                ["step", "state", "seconds", "from (s after the click)", "to"],
            ),
            "",
            md(
                [
                    [
                        name,
                        p["probes"],
                        f(p["rate_per_s"], 1),
                        p["failed_probes"],
                        f(p["longest_failure_s"], 2),
                        f(p["latency"].get("p50_s"), 3),
                        f(p["latency"].get("p99_s"), 3),
                        "; ".join(
                            f"{step}: p50 {f(lat.get('p50_s'), 3)}, p99 {f(lat.get('p99_s'), 3)}, "
                            f"max {f(lat.get('max_s'), 3)}"
                            for step, lat in p["latency_during_swap"].items()
                        )
                        or "—",
                        p.get("acknowledged_lost", "—"),
                    ]
                    for name, p in u["probers"].items()
                ],
                [
                    "prober",
                    "requests",
                    "req/s",
                    "failed",
                    "longest failure s",
                    "p50 s",
                    "p99 s",
                    "latency during the swap (s)",
                    "acked events lost",
                ],
            ),
            "",
        ]
        windows = [(name, w) for name, p in u["probers"].items() for w in p["failure_windows"]]
        if windows:
            out += [
                md(
                    [
                        [
                            name,
                            f(w["start"], 2),
                            f(w["end"], 2),
                            f(w["seconds"], 2),
                            ", ".join(w["steps"]),
                            "; ".join(f"{what} x{a['probes']}" for what, a in w["answers"].items()),
                        ]
                        for name, w in windows
                    ],
                    ["prober", "failing from (s)", "to", "seconds", "during", "answers"],
                ),
                "",
            ]
    out.append(
        f"All updates: **{d['failed_requests']} failed requests, "
        f"{d['acknowledged_lost']} acknowledged events lost** "
        f"(target 0 and 0: **{'met' if d['met'] else 'missed'}**).\n"
    )
    return out


START, END = "<!-- figures:start -->", "<!-- figures:end -->"
NAMES = [
    "pickup",
    "downtime",
    "downtime_compose",
    "overhead",
    "ingest",
    "history",
    "chmigrations",
    "footprint",
    "registry",
    "faults",
]


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write all results into this file")
    parser.add_argument("--doc", help="replace the figures between the markers of this Markdown file")
    args = parser.parse_args()
    text = render()
    if args.json:
        names = [*NAMES, *ingest_variants()]
        combined = {name: data for name in names if (data := load(name)) is not None}
        Path(args.json).write_text(json.dumps(combined, indent=1, default=str) + "\n")
    if args.doc:
        doc = Path(args.doc).read_text()
        head, _, rest = doc.partition(START)
        _, _, tail = rest.partition(END)
        Path(args.doc).write_text(f"{head}{START}\n{text}\n{END}{tail}")
    if not args.json and not args.doc:
        print(text)
    return 0


def render() -> str:
    out: list[str] = []
    any_data = next((load(n) for n in ("pickup", "faults", "ingest") if load(n)), None)
    if any_data:
        m = any_data["machine_at_start"]
        out.append(
            f"Machine: {m['nproc']} CPUs ({m['cpu']}), memory `{m['memory']}`, Python {m['python']}, "
            f"kernel {m['kernel']}.\n"
        )
    if d := load("pickup"):
        labelled = [
            ("trigger → backend stored `running`", d["pickup_ms"]),
            ("of which: backend `request()` + trigger write", d["request_ms"]),
        ]
        if "agent_side_ms" in d:
            labelled += [
                ("trigger → the agent wrote `running` (includes the line above)", d["agent_side_ms"]),
                ("`running` written → the backend stored it", d["delivery_ms"]),
            ]
        out += [
            "### 1. Trigger pickup latency",
            when(d),
            md(
                [[label, v["n"], f(v["p50"]), f(v["p95"]), f(v["max"])] for label, v in labelled],
                ["ms", "runs", "p50", "p95", "max"],
            ),
            f"\nTarget p95 < 1 s: **{'met' if d['met'] else 'missed'}**. Outcomes: {d['outcomes']}.\n",
        ]
    if d := load("downtime"):
        if "updates" in d:
            out += requests_section("### 2. Requests through local-mode updates (issue 18)", d)
        else:
            out += downtime_section("### 2. Downtime window of a local-mode update", d)
    if d := load("downtime_compose"):
        if "updates" in d:
            out += requests_section(
                "### 2b. Requests through compose-preset updates on containers (issue 18)", d
            )
        else:
            out += downtime_section("### 2b. Downtime window of a compose-preset update on containers", d)
        if page := d.get("login_page"):
            out += [
                md(
                    [
                        [f(w["start"], 2), f(w["end"], 2), f(w["seconds"], 2), ", ".join(w["steps"])]
                        for w in page["failure_windows"]
                    ]
                    or [["—", "—", "0", "—"]],
                    ["`/admin/login/` failing from (s)", "to", "seconds", "during"],
                ),
                f"\nThe web port itself (`/admin/login/`, no ClickHouse involved, same prober): "
                f"{page['probes']} probes, {page['failed_probes']} failed; **longest continuous failure "
                f"{f(page['longest_failure_s'], 2)} s**. Install of the v1.1.5 stack before the "
                f"update: {f(d.get('install_seconds'))} s.\n",
            ]
    if d := load("overhead"):
        m = d["median"]
        o, pct = d["overhead_s"], d["overhead_pct"]
        parts = sorted(d["direct_parts_median_s"].items(), key=lambda kv: -kv[1])
        out += [
            "### 3. Agent overhead",
            when(d),
            md(
                [
                    [
                        "agent process, `python -m host_agent once`",
                        f(m["agent_wall_s"], 3),
                        f(o["process"], 3),
                        f(pct["process"], 0),
                    ],
                    [
                        "agent run, claim → final event",
                        f(m["agent_in_run_s"], 3),
                        f(o["in_run"], 3),
                        f(pct["in_run"], 0),
                    ],
                    ["the steps' work run directly (sum)", f(m["direct_sum_s"], 3), "—", "—"],
                ],
                [f"median of {len(d['samples'])}", "seconds", "overhead (s)", "overhead (%)"],
            ),
            "",
            md([[k, f(v, 3)] for k, v in parts], ["direct part", "median s"]),
            "",
        ]
    variants = ["ingest", *ingest_variants()]
    for variant in variants:
        d = load(variant)
        if d is None:
            continue
        size = d["results"][0].get("manifest_bytes", 0) if d["results"] else 0
        title = (
            "### 4. Callback ingest on PostgreSQL"
            if variant == "ingest"
            else (f"#### 4b. The same with a {size // 1024} KiB registry document stored on the run")
        )
        out += [
            title,
            when(d),
            md(
                [
                    [
                        r["clients"],
                        r["batch"],
                        r["requests"],
                        f(r["events_per_s"], 0),
                        f(r["lines_per_s"], 0),
                        f(r["latency_ms"]["p50"], 0),
                        f(r["latency_ms"]["p95"], 0),
                        len(r["errors"]),
                        "yes" if r["events_stored"] == r["events_accepted"] else "NO",
                    ]
                    for r in d["results"]
                ],
                [
                    "clients",
                    "events/request",
                    "requests",
                    "events/s",
                    "log lines/s",
                    "p50 ms",
                    "p95 ms",
                    "errors",
                    "stored = acknowledged",
                ],
            ),
            "\nTarget ≥ 2,000 log lines/s (one client, as the agent sends): "
            f"**{'met' if d['met'] else 'missed'}**.\n",
        ]
    if d := load("history"):
        rows = []
        for runs, pages in d["pages"].items():
            for page, v in pages.items():
                rows.append(
                    [
                        f(int(runs)),
                        f(int(runs) * d["events_per_run"]),
                        page,
                        f(v["median_ms"], 0),
                        f(v["p95_ms"], 0),
                        v["queries"],
                    ]
                )
        out += [
            "### 5. Update history at scale",
            when(d),
            md(rows, ["runs", "events", "page", "median ms", "p95 ms", "SQL queries"]),
            f"\nBulk insert: {f(d['insert_seconds'])} s. Query count independent of rows: "
            f"**{d['queries_constant']}**. Target median < 200 ms with constant queries: "
            f"**{'met' if d['met'] else 'missed'}**.\n",
        ]
    if d := load("chmigrations"):
        out += [
            "### 6. ClickHouse migrations",
            when(d),
            md(
                [[k, v["n"], f(v["median"], 2), f(v["max"], 2)] for k, v in d["seconds"].items()],
                [f"{d['files']} files, {d['statements']} statements", "n", "median s", "max s"],
            ),
            f"\n**Apply overhead: {f(d['apply_overhead_ms_per_migration'], 0)} ms per migration** "
            "beyond the DDL.\n",
        ]
    if d := load("footprint"):
        out += [
            "### 7. Agent footprint (idle)",
            when(d),
            md(
                [
                    ["CPU", f"{d['cpu_seconds']:.2f} s over {d['seconds']} s = **{d['cpu_percent']:.3f} %**"],
                    [
                        "RSS (median / max)",
                        f"{d['rss_kib']['median'] / 1024:.1f} / {d['rss_kib']['max'] / 1024:.1f} MiB",
                    ],
                    ["peak RSS incl. start-up (VmHWM)", f"{(d['peak_rss_kib'] or 0) / 1024:.1f} MiB"],
                    ["threads", d["threads"]],
                ],
                ["idle agent", "value"],
            ),
            f"\nTarget idle CPU < 1 %: **{'met' if d['met'] else 'missed'}**.\n",
        ]
    if d := load("registry"):
        t, s = d["timings_ms"], d["schedule"]
        out += [
            "### 8. Registry check",
            when(d),
            md(
                [[k, v["n"], f(v["p50"]), f(v["p95"]), f(v["max"])] for k, v in t.items()],
                [f"ms (document {d['document_bytes'] // 1024} KiB)", "n", "p50", "p95", "max"],
            ),
            "",
            md(
                [
                    ["installs / interval", f"{s['installs']:,} / {s['interval_s']:,} s"],
                    ["first … last slot", f"{s['first_slot_s']:.0f} … {s['last_slot_s']:.0f} s"],
                    [
                        "most checks in one second (no jitter)",
                        f"{s['max_per_second']} ({s['no_jitter_max_per_second']:,})",
                    ],
                    [
                        "most checks in one minute (mean)",
                        f"{s['max_per_minute']} ({s['expected_per_minute']:.2f})",
                    ],
                    [
                        "minutes with at least one check",
                        f"{s['minutes_with_a_check']} of {s['minutes_in_interval']}",
                    ],
                    [
                        "Kolmogorov-Smirnov distance from uniform (5 % critical value)",
                        f"{s['ks_distance_from_uniform']:.4f} ({s['ks_critical_5pct']:.4f})",
                    ],
                ],
                ["schedule", "value"],
            ),
            "",
        ]
    if d := load("faults"):
        rows = []
        if "kills" in d:
            rows += [
                [
                    k["boundary"],
                    k["outcome"],
                    k["expected"],
                    k["serves"],
                    k["events"],
                    k["lost"],
                    "yes" if k["survived"] else "**no**",
                ]
                for k in d["kills"]
            ]
        out += ["### Fault injection", when(d)]
        if rows:
            out += [
                md(rows, ["killed at", "outcome", "expected", "serves", "events", "lost", "survived"]),
                "",
            ]
        summary = []
        if "kills" in d:
            summary.append(
                [
                    "kills survived at step boundaries",
                    f"{sum(k['survived'] for k in d['kills'])}/{len(d['kills'])}",
                    "all",
                ]
            )
            summary.append(["events lost after kills", sum(k["lost"] for k in d["kills"]), "0"])
        if "outage" in d:
            o = d["outage"]
            summary.append(
                [
                    f"events lost across a backend outage ({o['queued_while_down']} queued while down)",
                    o["lost"],
                    "0",
                ]
            )
        if "clicks" in d:
            c = d["clicks"]
            summary.append(
                [
                    f"duplicated runs, {c['clicks']} concurrent clicks in {c['rounds']} rounds",
                    c["duplicated_runs"],
                    "0",
                ]
            )
            summary.append(["install clicks answered 5xx / dropped", c["server_errors"], "0"])
        if "api" in d:
            a = d["api"]
            summary.append(
                [
                    f"agent API: 500/503/dropped of {a['tried']} hostile requests ({a['statuses']})",
                    a["crashes"],
                    "0",
                ]
            )
        if "triggers" in d:
            t = d["triggers"]
            summary.append(
                [
                    "trigger readers (agent, agent hint, backend): crashes/hangs on "
                    f"{t['tried']} hostile files",
                    t["crashes"],
                    "0",
                ]
            )
            summary.append(
                [
                    f"`host_agent once` on {len(t['agent_once'])} hostile triggers: traceback or exit ≠ 2",
                    t["agent_once_crashes"],
                    "0",
                ]
            )
        if "documents" in d:
            doc = d["documents"]
            summary.append(
                [
                    f"registry parsers (backend, agent): crashes on {doc['tried']} hostile documents",
                    doc["crashes"],
                    "0",
                ]
            )
            summary.append(
                [
                    "backend parser: unexpected errors turned into rejections by its catch-all",
                    doc["caught_by_catch_all"],
                    "(info)",
                ]
            )
        out += [md(summary, ["fault injection (seed " + str(d.get("seed")) + ")", "count", "must be"]), ""]
        for name in ("triggers", "documents"):
            for example in d.get(name, {}).get("examples", []):
                out.append(f"- {name}: `{example}`")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
