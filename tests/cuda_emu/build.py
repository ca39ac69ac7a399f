"""Build kernels/cuda/*.cu for the host emulation (emu.h) into a shared
library: each launch `k<<<cfg>>>(args)` becomes `kk_emu::launch(...)(args)`,
then g++ compiles the files as C++20 with the stand-in CUDA headers of
include/.  Used by tests/test_cuda_emulated.py."""
import pathlib
import re
import shutil
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SOURCES = ("rows.cu", "grad.cu", "segment.cu")
HEADERS = ("device.cuh", "online.cuh", "klkit_cuda.h")
LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)<<<(.*?)>>>\(", re.S)


def build(out_dir):
    """the path of the built library, or None where g++ is missing"""
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    out_dir = pathlib.Path(out_dir)
    srcs = []
    for name in SOURCES + HEADERS:      # (the headers beside them: found first)
        text = (ROOT / "kernels" / "cuda" / name).read_text()
        text = LAUNCH.sub(lambda m: f"kk_emu::launch([&](auto &&...kk_a) "
                                    f"{{ {m.group(1)}(kk_a...); }}, {m.group(2)})(", text)
        dst = out_dir / (name[:-3] + ".cpp" if name in SOURCES else name)
        dst.write_text(text)
        if name in SOURCES:
            srcs.append(str(dst))
    lib = out_dir / "libkkcuemu.so"
    cmd = [gxx, "-std=c++20", "-O1", "-fPIC", "-shared", "-ffp-contract=off",
           "-I", str(HERE / "include"), "-I", str(ROOT / "kernels" / "include"),
           "-I", str(ROOT / "kernels" / "cuda"), "-include", str(HERE / "emu.h"),
           *srcs, "-o", str(lib), "-lpthread"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return lib
