#!/usr/bin/env python3
"""Runs one libFuzzer harness as a bounded test, printing TAP.

Usage: run-fuzzer.py HARNESS --corpus DIR [--regressions DIR] --work DIR
                     [--seconds N] [--keep]

Case 1 replays every file in the regressions folder (inputs that once
crashed, leaked or hung): each must now run clean. Case 2 fuzzes for N
seconds (default: $FUZZ_TEST_SECONDS, else 15) starting from the seed
corpus and the regressions; new inputs go to WORK/corpus (wiped first
unless --keep), a crashing input to WORK/ as crash-*, leak-*, timeout-*.
The case line gives the number of executions. Exits 1 when a case failed.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

EXECS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")


def diag(text: str, limit: int = 60) -> None:
    lines = text.rstrip().splitlines()
    for line in lines[-limit:]:
        print("# " + line)


def files_in(folder: str) -> list:
    if not folder or not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, f)) and not f.startswith("."))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("harness")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--regressions")
    ap.add_argument("--work", required=True)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_TEST_SECONDS", "15")))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    name = os.path.basename(a.harness)
    # Every harness checks its own invariants; the per-input limits catch
    # hangs and runaway allocations as failures too.
    common = ["-timeout=10", "-rss_limit_mb=2048", "-malloc_limit_mb=1024"]
    print("1..2", flush=True)
    failed = 0

    regressions = files_in(a.regressions)
    if regressions:
        p = subprocess.run([a.harness, *common, *regressions], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace")
        if p.returncode == 0:
            print(f"ok 1 - {name}: {len(regressions)} regression input(s) run clean")
        else:
            failed += 1
            print(f"not ok 1 - {name}: a regression input fails again (exit {p.returncode})")
            diag(p.stdout)
    else:
        print(f"ok 1 - {name}: no regression inputs")

    work_corpus = os.path.join(a.work, "corpus")
    if not a.keep and os.path.isdir(a.work):
        shutil.rmtree(a.work)
    os.makedirs(work_corpus, exist_ok=True)
    seeds = [d for d in (a.corpus, a.regressions) if d and os.path.isdir(d)]
    cmd = [a.harness, *common, f"-max_total_time={a.seconds}", "-print_final_stats=1",
           f"-artifact_prefix={a.work}/", work_corpus, *seeds]
    dict_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), name.replace("fuzz_", "") + ".dict")
    if os.path.isfile(dict_file):
        cmd.insert(1, f"-dict={dict_file}")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    m = EXECS.search(p.stdout)
    execs = int(m.group(1)) if m else 0
    corpus_size = len(files_in(work_corpus))
    if p.returncode == 0 and m:
        print(f"ok 2 - {name}: {a.seconds} s, {execs} executions, {corpus_size} new corpus inputs")
    else:
        failed += 1
        artifacts = [f for f in files_in(a.work) if re.match(r"(crash|leak|timeout|oom|slow-unit)-",
                                                              os.path.basename(f))]
        print(f"not ok 2 - {name}: failed after {execs} executions (exit {p.returncode}); "
              f"input: {artifacts[0] if artifacts else 'none saved'}")
        diag(p.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
