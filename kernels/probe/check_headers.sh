#!/usr/bin/env bash
# check_headers.sh: the math headers (kernels/include/klkit/*.h) compile as
# strict C11, as C++17 and as CUDA C++ for sm_80 and sm_90 (and the CPU
# entry points' header, klkit_cpu.h, as strict C11), their KLKIT_HD
# functions called from host code and from a __global__ kernel
# (headers_probe.c).  The C build always runs, the C++ build where g++ is
# found, the CUDA builds where nvcc is on PATH (compiling only: no GPU is
# needed).  It also fails when the probe misses a header or a KLKIT_HD
# function.  Run by .ci/run before the package is built.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
inc="$here/../include"
probe="$here/headers_probe.c"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

missing=0
for h in "$inc"/klkit/*.h; do
    if ! grep -q "#include \"klkit/$(basename "$h")\"" "$probe"; then
        echo "check_headers: headers_probe.c does not include klkit/$(basename "$h")" >&2
        missing=1
    fi
done
for fn in $(sed -n 's/^static KLKIT_HD[^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$inc"/klkit/*.h | sort -u); do
    if ! grep -qw "$fn" "$probe"; then
        echo "check_headers: headers_probe.c does not call $fn" >&2
        missing=1
    fi
done
[ "$missing" = 0 ]

echo "check_headers: gcc -std=c11 -pedantic"
gcc -std=c11 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$probe" -o "$out/probe_c.o"

echo "check_headers: klkit_cpu.h (the CPU entry points), gcc -std=c11 -pedantic"
printf '#include "klkit_cpu.h"\ntypedef int kk_probe_nonempty;\n' |
    gcc -std=c11 -pedantic -Wall -Wextra -Werror -I"$here/../cpu" -I"$inc" -x c -fsyntax-only -

if command -v g++ >/dev/null 2>&1; then
    echo "check_headers: g++ -std=c++17 -pedantic"
    g++ -x c++ -std=c++17 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$probe" -o "$out/probe_cxx.o"
fi

if command -v nvcc >/dev/null 2>&1; then
    for arch in sm_80 sm_90; do
        echo "check_headers: nvcc -std=c++17 -arch=$arch"
        nvcc -std=c++17 -arch="$arch" -x cu -Werror all-warnings \
             -Xcompiler -Wall,-Wextra,-Werror -I"$inc" -c "$probe" -o "$out/probe_$arch.o"
    done
else
    echo "check_headers: nvcc not on PATH, the CUDA builds are skipped"
fi
echo "check_headers: ok"
