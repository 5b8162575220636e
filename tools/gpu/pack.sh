#!/bin/sh
# Packs vkpeft and the Vulkan test programs from build/ (stripped, xz: about 11 MB) into
# .gpu/build.tar.xz for tools/gpu/experiment.sh, with their commands from meson introspect.
set -e
cd "$(dirname "$0")/../.."
meson introspect build --tests > /tmp/tests.json
mkdir -p .gpu .gl
# The Vulkan loader, glvnd (NVIDIA's Vulkan driver needs it), the validation layer and the tool's
# shared libraries, as Debian packages the experiment unpacks there.
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64'
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 \
        vulkan-validationlayers libcjson1 libopenblas0-pthread libgfortran5)
fi
rm -rf /tmp/gpack && mkdir -p /tmp/gpack/build/tools /tmp/gpack/build/tests
cp build/tools/vkpeft /tmp/gpack/build/tools/
/usr/bin/python3 - <<'PY'
import json, shutil, os
t = json.load(open('/tmp/tests.json'))
keep = [x for x in t if 'vkpeft:vk' in x['suite']]
bins = sorted({x['cmd'][0] for x in keep})
for b in bins:
    shutil.copy(b, '/tmp/gpack/build/tests/')
json.dump(keep, open('/tmp/gpack/tests.json', 'w'))
print(len(keep), 'tests,', len(bins), 'programs')
PY
strip /tmp/gpack/build/tools/vkpeft /tmp/gpack/build/tests/*
tar -C /tmp/gpack -cf - build tests.json | xz -9e -T2 > .gpu/build.tar.xz
ls -la .gpu/build.tar.xz
