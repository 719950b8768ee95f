#!/usr/bin/env python3
"""Per-mapping memory breakdown of one process from /proc/PID/smaps (figures only).

  python3 bench/_smaps.py PID [--top N]

One row per mapped file (all its segments summed) plus [heap], [stack] and
anonymous mappings: RSS, PSS, private dirty, anonymous, in KiB, largest RSS first.
"""
import re
import sys


def breakdown(pid):
    rows = {}
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", line)
            if m:
                name = m.group(1).strip() or "[anon]"
                name = name.rsplit("/", 1)[-1]
                cur = rows.setdefault(name, {"Rss": 0, "Pss": 0, "Private_Dirty": 0,
                                             "Anonymous": 0})
                continue
            k, _, v = line.partition(":")
            if cur is not None and k in cur:
                cur[k] += int(v.split()[0])
    return rows


def main():
    pid = sys.argv[1]
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 1000
    rows = breakdown(pid)
    tot = {k: sum(r[k] for r in rows.values()) for k in ("Rss", "Pss", "Private_Dirty",
                                                           "Anonymous")}
    print(f"{'mapping':32} {'RSS':>6} {'PSS':>6} {'PrivD':>6} {'Anon':>6}  (KiB)")
    for name, r in sorted(rows.items(), key=lambda x: -x[1]["Rss"])[:top]:
        print(f"{name[:32]:32} {r['Rss']:6} {r['Pss']:6} {r['Private_Dirty']:6} "
              f"{r['Anonymous']:6}")
    print(f"{'total (' + str(len(rows)) + ' mappings)':32} {tot['Rss']:6} {tot['Pss']:6} "
          f"{tot['Private_Dirty']:6} {tot['Anonymous']:6}")


if __name__ == "__main__":
    main()
