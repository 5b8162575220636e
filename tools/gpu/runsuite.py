# Runs the packed Vulkan tests (those SUITE_ONLY's pattern finds, when set) (tests.json from meson introspect) on this machine, 8 at a time,
# each with its own cache folder; prints a summary and writes logs under $OUT.
import json, os, subprocess, sys, concurrent.futures as cf, time
root, gb, out = os.getcwd(), '/tmp/gb', os.environ.get('OUT', '/tmp')
tests = json.load(open(f'{gb}/tests.json'))
# SUITE_ONLY: a regular expression; only the tests whose names it finds run.
if os.environ.get('SUITE_ONLY'):
    import re
    tests = [t for t in tests if re.search(os.environ['SUITE_ONLY'], t['name'])]
def fix(s): return s.replace('/work/main/build/', gb + '/build/').replace('/work/main/', root + '/')
def run(t):
    env = dict(os.environ); env.update({k: fix(v) for k, v in t['env'].items()})
    env['XDG_CACHE_HOME'] = f'/tmp/cache-{t["name"]}'
    env['VKPEFT_TORCH_PYTHON'] = 'python3'
    t0 = time.time()
    try:
        p = subprocess.run([fix(c) for c in t['cmd']], env=env, capture_output=True, text=True, timeout=240)
        rc, text = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, text = 'timeout', (e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
    return t['name'], rc, time.time() - t0, text
passed = failed = 0
with open(f'{out}/suite.log', 'w') as log, cf.ThreadPoolExecutor(8) as ex:
    for name, rc, dt, text in ex.map(run, tests):
        ok = rc == 0
        passed += ok; failed += not ok
        print(f'{"ok  " if ok else "FAIL"} {name} {dt:.1f}s', flush=True)
        log.write(f'=== {name} rc={rc} {dt:.1f}s\n{text}\n')
        if not ok: print('\n'.join(l for l in text.splitlines() if 'not ok' in l or 'FAIL' in l or 'error' in l.lower())[-3000:])
print(f'{passed} passed, {failed} failed')
