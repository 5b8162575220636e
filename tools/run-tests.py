#!/usr/bin/env python3
"""Runs the meson test suite and totals its TAP cases.

Usage: run-tests.py BUILD_DIR [--sanitized SAN_DIR] [meson test arguments...]

Every test program prints TAP; this script counts each "ok"/"not ok" case
(a program that crashed before reporting counts as one failure), lists the
failures, and ends with the line "N passed, N failed". It exits non-zero
when anything failed.

With --sanitized, SAN_DIR is a build configured with -Dsanitize=true
-Dfuzz=true (clang): after the main suite, the host unit tests below run
there under ASan + UBSan with leak detection, and every fuzzer (suite
'fuzz') for FUZZ_TEST_SECONDS over its seeds and regression inputs; their
cases count in the same total, named "sanitized/<test>".
"""
import json
import os
import re
import subprocess
import sys

CASE = re.compile(r"^(not ok|ok)\b\s*\d*\s*-?\s*(.*)$")

# Host-side unit tests (parsers, tokenizers, planners) that need no Vulkan
# device: the Vulkan driver and loader are not built with the sanitizers, so
# the device tests stay in the main build only.
SANITIZED_TESTS = ["util", "arch", "delta_spec", "metrics", "lmdata", "search", "textmetrics", "dataset",
                   "peft", "safetensors", "tokenizer", "tokenizer_text"]


def run_meson(build, args, label=""):
    """Runs meson test; returns (passed, failed, failures, returncode)."""
    log = os.path.join(build, "meson-logs", "testlog.json")
    if os.path.exists(log):
        os.remove(log)
    proc = subprocess.run(["meson", "test", "-C", build, "--print-errorlogs", *args])
    passed = failed = 0
    failures = []
    try:
        with open(log, encoding="utf-8") as f:
            entries = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        entries = []
    for e in entries:
        name = label + e["name"]
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
                failures.append(f"{name}: {m.group(2)}")
        failed += case_failures
        # A program that failed without a failing case (a crash, a timeout, a
        # missing plan line, a leak report at exit) is one more failure.
        if e.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and case_failures == 0:
            failed += 1
            failures.append(f"{name}: {e.get('result')} after {cases} case(s)")
    if not entries:
        failed += 1
        failures.append(f"no test results: meson test did not run in {build}")
    return passed, failed, failures, proc.returncode


def main() -> int:
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    build, args = args[0], args[1:]
    sanitized = None
    if len(args) >= 2 and args[0] == "--sanitized":
        sanitized, args = args[1], args[2:]
    passed, failed, failures, rc = run_meson(build, args)
    if sanitized:
        for extra in (SANITIZED_TESTS, ["--suite", "fuzz"]):
            p, f, fl, r = run_meson(sanitized, extra, "sanitized/")
            passed, failed, failures, rc = passed + p, failed + f, failures + fl, rc or r
    if failures:
        print("\nfailed:")
        for f in failures:
            print("  " + f)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
