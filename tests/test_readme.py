"""The README's Python examples run as written, and it opens with the set-up commands."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text() if README.exists() else ""
BLOCKS = re.findall(r"^```(?:python|py)\n(.*?)^```", TEXT, re.S | re.M)
SETUP = ('pip install ".[cli]" && klkit seq-kl\n'
         'pip install ".[test]" && python -m pytest tests\n')
# optional dependencies an example may import: skipped where one is missing
OPTIONAL = ("pyarrow", "pandas", "torch", "dask")


@pytest.mark.skipif(not TEXT, reason="README.md not beside the tests")
def test_readme_opens_with_the_setup_commands():
    first = re.search(r"^```[^\n]*\n(.*?)^```", TEXT, re.S | re.M)
    assert first is not None and first.group(1) == SETUP


@pytest.mark.skipif(not BLOCKS, reason="README.md not beside the tests")
@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs(i):
    for name in OPTIONAL:
        if re.search(rf"^(import|from) .*\b{name}\b", BLOCKS[i], re.M):
            pytest.importorskip(name)
    exec(compile(BLOCKS[i], f"README.md python block {i}", "exec"), {})
