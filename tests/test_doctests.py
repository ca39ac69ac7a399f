"""The Examples sections of the public docstrings run as written, and every
public function has at least one example."""
import doctest
import importlib

import pytest

import klkit
from klkit._registry import FUNCTIONS

FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
MODULES = ["klkit", "klkit.dense", "klkit.divergence", "klkit.tokens", "klkit.segments",
           "klkit.scipy", "klkit.dask._dense", "klkit.dask._divergence", "klkit.dask._segments"]
# the public functions defined outside the family modules
OTHERS = {"klkit": ["set_num_threads", "get_num_threads", "show_config"],
          "klkit.scipy": ["entr", "entropy", "kl_div", "rel_entr"]}


def _dask_functions():
    try:
        import klkit.dask
    except ImportError:         # dask not installed: nothing to check
        return {}
    return {"klkit.dask": list(klkit.dask.__all__)}


OTHERS.update(_dask_functions())


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_pass(name):
    if name.startswith("klkit.dask"):
        pytest.importorskip("dask.dataframe")
        pytest.importorskip("pyarrow")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = [t for t in finder.find(module, name) if t.examples]
    # only the docstrings of this module (klkit re-exports the family modules' functions)
    tests = [t for t in tests if t.filename == module.__file__]
    assert tests, f"{name}: no examples found"
    for t in tests:
        runner.run(t)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, f"{name}: {res.failed} of {res.attempted} examples failed (see above)"


def _public():
    out = [(f.family, f.name) for f in FUNCTIONS.values()]
    out += [(mod, n) for mod, names in OTHERS.items() for n in names]
    return out


@pytest.mark.parametrize("module,name", _public())
def test_every_public_function_has_an_example(module, name):
    mod = importlib.import_module(module if "." in module or module == "klkit" else f"klkit.{module}")
    doc = getattr(mod, name).__doc__ or ""
    tests = doctest.DocTestParser().get_examples(doc)
    assert tests, f"{mod.__name__}.{name}: no Examples in its docstring"
    assert "Examples\n" in doc, f"{mod.__name__}.{name}: no Examples section"


def test_registry_and_all_agree():
    assert set(FUNCTIONS) <= set(klkit.__all__)
