"""The pytest plugin of softdpu: a `dpu` fixture, a Harness for the test's pipeline.

Installed with softdpu (the `pytest11` entry point "softdpu.testing.plugin" in
pyproject.toml), so any project that installs softdpu has it; without the
install, `pytest -p softdpu.testing.plugin` loads it (a no-op when the entry
point already did).  Disable it with `-p no:softdpu.testing.plugin`.

    @pytest.mark.pipeline("my-switch.toml")            # relative to the test file (or the rootdir)
    def test_learning(dpu):
        dpu.send("p1", Ether(src=A, dst=B) / IP() / UDP())
        dpu.expect("p2", ...)

    @pytest.mark.pipeline(toml=TOML, flows="actions=normal\\n")   # a pipeline given as text

    @pytest.mark.parametrize("dpu", ["a.toml", "b.toml"], indirect=True)   # one run per pipeline
    def test_both(dpu): ...

An indirect parameter is a path or a dict {"path": ...} / {"toml": ..., "flows": ...};
it wins over a marker.  The marker may sit on a test, a class or a module
(`pytestmark = pytest.mark.pipeline("x.toml")`); the closest one counts.
Every test gets a fresh Dpu.  Importing this module is cheap: softdpu
(numba, scapy) loads only when a test asks for `dpu`.
"""
from pathlib import Path

import pytest

MARKER = ("pipeline(path=None, *, toml=None, flows=None, batch=None): the pipeline the `dpu` fixture "
          "loads: a .toml file (relative to the test file, else to the rootdir) or TOML and .flows text")


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER)


def _spec(request):
    """(path, toml, flows, batch) from the indirect parameter or the closest `pipeline` marker."""
    if hasattr(request, "param"):
        p = request.param
        if isinstance(p, dict):
            args, kwargs = (), dict(p)
        else:
            args, kwargs = (p,), {}
        where = "the dpu parameter"
    else:
        m = request.node.get_closest_marker("pipeline")
        if m is None:
            pytest.fail("the dpu fixture needs a pipeline: @pytest.mark.pipeline(\"my-pipeline.toml\") "
                        "or @pytest.mark.parametrize(\"dpu\", [\"my-pipeline.toml\"], indirect=True)",
                        pytrace=False)
        args, kwargs = m.args, dict(m.kwargs)
        where = "@pytest.mark.pipeline"
    unknown = set(kwargs) - {"path", "toml", "flows", "batch"}
    if len(args) > 1 or unknown:
        pytest.fail(f"{where}: expected a path, or toml= and flows= (and batch=); got "
                    f"{len(args)} arguments and {', '.join(sorted(unknown)) or 'no other'} keywords", pytrace=False)
    path = args[0] if args else kwargs.get("path")
    toml, flows = kwargs.get("toml"), kwargs.get("flows")
    if (path is None) == (toml is None):
        pytest.fail(f"{where}: give either a pipeline path or toml= (with flows=), not "
                    f"{'both' if path is not None else 'neither'}", pytrace=False)
    if flows is not None and toml is None:
        pytest.fail(f"{where}: flows= goes with toml=; a pipeline file names its own .flows file", pytrace=False)
    return path, toml, flows, kwargs.get("batch"), where


def _resolve(path, request):
    path = Path(path)
    if path.is_absolute():
        return path
    here = Path(str(getattr(request, "path", None) or request.fspath)).parent   # request.path: pytest >= 7
    root = Path(str(getattr(request.config, "rootpath", None) or request.config.rootdir))
    tried = [here / path, root / path]
    tried = [p for k, p in enumerate(tried) if p not in tried[:k]]
    for p in tried:
        if p.is_file():
            return p
    pytest.fail(f"no pipeline file {path}: looked in {' and '.join(str(p) for p in tried)}", pytrace=False)


@pytest.fixture
def dpu(request):
    """A softdpu.testing.Harness for the test's pipeline (marker `pipeline` or indirect parameter)."""
    from softdpu.errors import SoftdpuError
    from softdpu.testing.harness import Harness

    path, toml, flows, batch, where = _spec(request)
    kw = {} if batch is None else {"batch": batch}
    problem = None
    try:
        h = (Harness.from_text(toml, flows or "", **kw) if toml is not None
             else Harness.load(_resolve(path, request), **kw))
    except SoftdpuError as e:
        problem = f"{where}: {e}"
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield h
    finally:
        h.close()
