#!/usr/bin/env python3
"""Turns the measurements of bench/run.sh (WORK/samples.tsv, meta.txt, commands.tsv, notes.txt)
into the markdown report: the comparison table (medians; esbackup ÷ peer from the same run),
the scale table, S3 requests by API call, notes, the machine and the commands to reproduce.

Usage: report.py WORK
"""

import os
import statistics
import sys
from collections import OrderedDict

ROWS = OrderedDict(
    [
        ("s3-backup", "S3 (Garage) full backup"),
        ("s3-restore", "S3 restore into an empty folder, checked equal"),
        ("s3-noop", "S3 no-op rerun (nothing changed)"),
        ("folder-backup", "Folder target full backup"),
        ("folder-restore", "Folder target restore, checked equal"),
        ("folder-noop", "Folder target no-op rerun"),
        ("azure-backup", "Azure (Azurite) full backup"),
        ("gcs-backup", "GCS (fake-gcs-server) full backup"),
        ("copy-s3-gcs", "copy S3 (Garage) → GCS (fake-gcs-server)"),
        ("copy-idle", "copy again, nothing new"),
        ("codec-backup", "S3 (Garage) full backup of JSON events, zstd:3 location"),
        ("codec-restore", "S3 restore from the zstd:3 location, checked equal"),
    ]
)
SCALE_ROWS = ["scale-files", "scale-64g"]
TOOL_NAMES = {"rclone": "rclone copy"}
FIELDS = ["row", "tool", "rep", "ok", "wall", "user", "sys", "rss_kb", "requests", "server_cpu", "bytes", "files", "detail"]


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt(v, digits=2):
    if v is None:
        return "—"
    if digits == 0 or abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def iec(n):
    n = float(n)
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"]:
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def load(work):
    samples = []
    with open(os.path.join(work, "samples.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            parts += [""] * (len(FIELDS) - len(parts))
            samples.append(dict(zip(FIELDS, parts)))
    meta = {}
    with open(os.path.join(work, "meta.txt")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    commands = OrderedDict()
    with open(os.path.join(work, "commands.tsv")) as f:
        for line in f:
            row, tool, cmd = line.rstrip("\n").split("\t", 2)
            commands.setdefault((row, tool), cmd)
    with open(os.path.join(work, "notes.txt")) as f:
        notes = list(OrderedDict.fromkeys(l.strip() for l in f if l.strip()))
    return samples, meta, commands, notes


class Stat:
    """Medians over the successful runs of one (row, tool)."""

    def __init__(self, runs):
        self.runs = runs
        good = [r for r in runs if r["ok"] == "1"]
        self.failed = len(runs) - len(good)
        self.n = len(good)

        def med(f):
            vals = [v for v in map(f, good) if v is not None]
            return statistics.median(vals) if vals else None

        self.wall = med(lambda r: num(r["wall"]))
        self.cpu = med(lambda r: (num(r["user"]) or 0) + (num(r["sys"]) or 0))
        self.rss = med(lambda r: (num(r["rss_kb"]) or 0) / 1024)
        self.requests = med(lambda r: num(r["requests"]))
        self.server_cpu = med(lambda r: num(r["server_cpu"]))
        self.bytes = num(runs[0]["bytes"]) or 0
        self.files = num(runs[0]["files"]) or 0
        self.walls = [num(r["wall"]) for r in good]
        self.detail = next((r["detail"] for r in good if r["detail"]), "")

    @property
    def mbps(self):
        return self.bytes / 1e6 / self.wall if self.bytes and self.wall else None

    @property
    def cpu_per_gib(self):
        return self.cpu / (self.bytes / 2**30) if self.bytes and self.cpu is not None else None

    @property
    def files_per_s(self):
        return self.files / self.wall if self.files and self.wall else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def main():
    work = sys.argv[1]
    samples, meta, commands, notes = load(work)
    by = OrderedDict()
    for s in samples:
        by.setdefault((s["row"], s["tool"]), []).append(s)
    out = []
    w = out.append
    w("# esbackup benchmark")
    w("")
    w(f"`{meta.get('invocation', 'bench/run.sh')}` — {meta.get('date', '?')}, {int(meta.get('elapsed', 0)) // 60} min {int(meta.get('elapsed', 0)) % 60} s.")
    w("")
    w(f"**Machine:** {meta.get('cpu', '?')}, {meta.get('nproc', '?')} CPUs (nproc), {meta.get('ram', '?')} RAM, "
      f"{meta.get('kernel', '?')}, {meta.get('os', '?')}; benchmark folder on {meta.get('fs', '?')}. "
      "Every server runs on the same machine, on 127.0.0.1 (loopback), sharing the CPUs with the client.")
    w("")
    w(f"**Versions:** esbackup {meta.get('esbackup', '?')}; {meta.get('versions', '')}.")
    w("")
    w(f"Figures are medians of {meta.get('repeat', '?')} runs (scale-64g: {meta.get('scale_repeat', '?')}). "
      "Wall = elapsed time; CPU = user+sys of the client and its children (GNU time); peak RSS = the client's "
      "largest process; requests = what the server counted (Garage's S3 metrics; Azurite's and fake-gcs-server's access logs); server CPU = the storage server's own CPU "
      "during the run. MB/s = 10⁶ bytes per second of the data set. The last column is esbackup's median "
      "÷ the peer's (below 1: esbackup takes less), measured in this run on the same data, in the page cache.")
    w("")
    w("| Row | Data | Tool | Wall s | MB/s | CPU s | CPU s/GiB | Peak RSS MiB | Requests | Server CPU s | esbackup ÷ peer |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row, title in ROWS.items():
        tools = [(t, Stat(runs)) for (r, t), runs in by.items() if r == row]
        if not tools:
            continue
        named = dict(tools)
        esb = named.get("esbackup")
        first = True
        for tool, st in tools:
            transfer = st.bytes > 0
            label = title if first else ""
            d = ""
            if first:
                d = (f"{iec(st.bytes)}, " if transfer else "") + f"{int(st.files):,} files"
            cmp = ""
            if tool.startswith("esbackup,") and "cp -r" in named:
                # A variant of esbackup (fsyncs off): set beside the plain copy, not beside itself.
                r = ratio(st.wall, named["cp -r"].wall)
                cmp = f"÷ cp -r: wall {r:.2f}" if r is not None else ""
            elif tool != "esbackup" and esb is not None:
                parts = []
                for name, a, b in [
                    ("wall", esb.wall, st.wall),
                    ("CPU", esb.cpu, st.cpu),
                    ("RSS", esb.rss, st.rss),
                    ("requests", esb.requests, st.requests),
                ]:
                    r = ratio(a, b)
                    if r is not None:
                        parts.append(f"{name} {r:.2f}")
                cmp = " · ".join(parts)
            name = TOOL_NAMES.get(tool, tool)
            if st.failed:
                name += f" ({st.failed} of {len(st.runs)} runs FAILED)"
            w(
                f"| {label} | {d} | {name} | {fmt(st.wall)} | {fmt(st.mbps, 0) if transfer else '—'} | {fmt(st.cpu)} | "
                f"{fmt(st.cpu_per_gib) if transfer else '—'} | {fmt(st.rss, 0)} | "
                f"{fmt(st.requests, 0) if st.requests is not None else '—'} | {fmt(st.server_cpu)} | {cmp} |"
            )
            first = False
    w("")

    scale = [(r, t, Stat(runs)) for (r, t), runs in by.items() if r in SCALE_ROWS]
    if scale:
        w("## Scale")
        w("")
        w("Many small chunk files (esbackup to a folder and to S3; `cp -r` of the same files shows what the "
          "file system itself costs per file), and one big database whose chunks are sparse files "
          "(zeros read from holes: the data is read and MD5-hashed once, no disk I/O; Garage stores the zeros "
          "deduplicated). Memory should stay flat whatever the size or file count.")
        w("")
        w("| Backup | Files | Size | Wall s | Files/s | MB/s | CPU s | CPU s/GiB | Peak RSS MiB | Requests | ms per file |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row, tool, st in scale:
            name = tool + (f" ({st.failed} of {len(st.runs)} runs FAILED)" if st.failed else "")
            per_file = st.wall / st.files * 1000 if st.wall and st.files else None
            w(
                f"| {name} | {int(st.files):,} | {iec(st.bytes)} | {fmt(st.wall)} | {fmt(st.files_per_s, 0)} | "
                f"{fmt(st.mbps, 0)} | {fmt(st.cpu)} | {fmt(st.cpu_per_gib)} | {fmt(st.rss, 0)} | "
                f"{fmt(st.requests, 0) if st.requests is not None else '—'} | {fmt(per_file)} |"
            )
        # Growth from the smallest to the largest file count, per target.
        lines = []
        for target in ["folder", "cp -r", "S3"]:
            pts = sorted(
                (st.files, st.wall, st.rss)
                for r, t, st in scale
                if r == "scale-files" and t.startswith(target + ",") and st.wall
            )
            if len(pts) >= 2:
                (f0, w0, r0), (f1, w1, r1) = pts[0], pts[-1]
                lines.append(
                    f"{target}: ×{f1 / f0:.1f} files → ×{w1 / w0:.1f} time, ×{r1 / r0:.2f} peak RSS "
                    f"({'linear or better' if w1 / w0 <= 1.3 * f1 / f0 else 'WORSE than linear'})"
                )
        if lines:
            w("")
            w("Growth from the smallest to the largest file count: " + "; ".join(lines) + ".")
        w("")

    details = [(r, t, Stat(runs)) for (r, t), runs in by.items() if Stat(runs).detail]
    if details:
        w("## Requests by API call (first successful run)")
        w("")
        for row, tool, st in details:
            w(f"- {row}, {TOOL_NAMES.get(tool, tool)}: {st.detail.replace(':', ' ')}")
        w("")

    w("## All runs (wall seconds)")
    w("")
    for (row, tool), runs in by.items():
        walls = ", ".join(f"{r['wall']}{'' if r['ok'] == '1' else ' (failed)'}" for r in runs)
        w(f"- {row}, {TOOL_NAMES.get(tool, tool)}: {walls}")
    w("")

    if notes:
        w("## Notes")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")

    w("## Reproduce")
    w("")
    w("```sh")
    w("scripts/test-env.sh   # once: Garage, Azurite, fake-gcs-server, rclone, GNU time (bench/run.sh runs it if needed)")
    w(meta.get("invocation", "bench/run.sh"))
    w("```")
    w("")
    w(f"Data: {meta.get('db', '')}; no-op: {meta.get('db_noop', '')}; scale: {meta.get('db_scale', '')} "
      "(all written by bench/gen-db.py and reused by later runs). Logs, GNU time reports and every sample: "
      f"`{meta.get('work', '')}`. The commands each row measures (PORT: a free port; …: the throw-away key "
      "of that run):")
    w("")
    for (row, tool), cmd in commands.items():
        w(f"- {row}, {TOOL_NAMES.get(tool, tool)}: `{cmd}`")
    w("")
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
