"""The README's Python examples run as written."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if README.exists() else []


@pytest.mark.skipif(not BLOCKS, reason="README.md not beside the tests")
@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs(i):
    pytest.importorskip("pyarrow")
    if re.search(r"^import torch|^import .*\btorch\b", BLOCKS[i], re.M):
        pytest.importorskip("torch")      # an optional dependency
    exec(compile(BLOCKS[i], f"README.md python block {i}", "exec"), {})
