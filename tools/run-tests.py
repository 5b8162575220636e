#!/usr/bin/env python3
"""Runs the meson test suite and totals its TAP cases.

Usage: run-tests.py BUILD_DIR [meson test arguments...]

Every test program prints TAP; this script counts each "ok"/"not ok" case
(a program that crashed before reporting counts as one failure), lists the
failures, and ends with the line "N passed, N failed". It exits non-zero
when anything failed.
"""
import json
import os
import re
import subprocess
import sys

CASE = re.compile(r"^(not ok|ok)\b\s*\d*\s*-?\s*(.*)$")


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = sys.argv[1]
    log = os.path.join(build, "meson-logs", "testlog.json")
    if os.path.exists(log):
        os.remove(log)
    proc = subprocess.run(["meson", "test", "-C", build, "--print-errorlogs", *sys.argv[2:]])
    passed = failed = 0
    failures = []
    try:
        with open(log, encoding="utf-8") as f:
            entries = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        entries = []
    for e in entries:
        cases = case_failures = 0
        for line in (e.get("stdout") or "").splitlines():
            m = CASE.match(line)
            if not m:
                continue
            cases += 1
            if m.group(1) == "ok":
                passed += 1
            else:
                case_failures += 1
                failures.append(f"{e['name']}: {m.group(2)}")
        failed += case_failures
        # A program that failed without a failing case (a crash, a timeout, a
        # missing plan line) is one more failure.
        if e.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and case_failures == 0:
            failed += 1
            failures.append(f"{e['name']}: {e.get('result')} after {cases} case(s)")
    if not entries:
        failed += 1
        failures.append("no test results: meson test did not run")
    if failures:
        print("\nfailed:")
        for f in failures:
            print("  " + f)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or proc.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
