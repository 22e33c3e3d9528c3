#!/usr/bin/env python3
"""Coverage per fuzz target from libFuzzer logs (fuzz/logs/*.log by default): executions,
final coverage, and how far into the run coverage last grew. A target whose coverage
stopped growing early in a long run has plateaued; one still growing near the end
needs a longer run."""
import re, sys, pathlib
for log in sorted(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz/logs").glob("*.log")):
    execs, covs = [], []
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+)", line)
        if m:
            execs.append(int(m.group(1))); covs.append((int(m.group(2)), int(m.group(3))))
    if not execs:
        print(log.stem, "no data"); continue
    final_cov = covs[-1][0]
    first_final = next(e for e, c in zip(execs, covs) if c[0] == final_cov)
    total = execs[-1]
    crashed = "deadly signal" in log.read_text(errors="replace") or "panicked" in log.read_text(errors="replace")
    print(f"{log.stem}: {total} execs, cov {final_cov} ft {covs[-1][1]}, cov last grew at exec {first_final} ({100*first_final/total:.0f}% of the run), crash={crashed}")
