"""The pytest plugin (softdpu/testing/plugin.py): the `dpu` fixture in projects of their own, run by pytester.

Each test writes a small project (pipeline files and a test module) and runs
pytest on it in a subprocess, as a user would.  The plugin is loaded with
`-p softdpu.testing.plugin` when this environment's softdpu install predates
its entry point, else by the entry point itself; the entry point's
declaration is checked in pyproject.toml and, through a dist-info written
from it, by a pytest that loads it with nothing else on its command line.
"""
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "softdpu.testing.plugin"

TOML = '[pipeline]\nflows = "wire.flows"\n\n' + "".join(
    f'[[port]]\nname = "p{k}"\nofport = {k}\ntype = "pcap"\n\n' for k in (1, 2))
FLOWS = "in_port=1,actions=output:2\nin_port=2,actions=output:1\n"
HEAD = """\
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

PKT = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / UDP(dport=7)
"""


def installed():
    """The plugin's entry point is in this environment's softdpu install (then no -p is needed)."""
    return any(ep.name == PLUGIN for ep in entry_points(group="pytest11"))


def run(pytester, *args):
    extra = [] if installed() else ["-p", PLUGIN]
    return pytester.runpytest_subprocess(*extra, "-p", "no:cacheprovider", *args, timeout=300)


@pytest.fixture
def project(pytester):
    pytester.makefile(".toml", wire=TOML)
    pytester.makefile(".flows", wire=FLOWS)
    return pytester


def test_marker_on_a_test_a_module_and_inline(project):
    project.makepyfile(test_it=HEAD + '''
@pytest.mark.pipeline("wire.toml")
def test_path(dpu):
    dpu.send("p1", PKT)
    dpu.expect("p2", PKT)
    dpu.expect_nothing_else()

@pytest.mark.pipeline(toml=open("wire.toml").read().replace('flows = "wire.flows"', ""),
                      flows="in_port=1,actions=drop\\n")
def test_inline(dpu):
    dpu.send("p1", PKT)
    dpu.expect_drop("action_drop")

class TestClass:
    pytestmark = pytest.mark.pipeline("wire.toml")

    def test_fresh_dpu_each_test(self, dpu):
        assert dpu.sent == [] and dpu.stats.rx == 0
        dpu.send(2, PKT)
        dpu.expect(1, PKT)
''')
    r = run(project)
    r.assert_outcomes(passed=3)


def test_indirect_parametrisation_and_paths_from_the_rootdir(project):
    sub = project.mkpydir("sub")
    (sub / "test_deep.py").write_text(HEAD + '''
OTHER = {"toml": open("wire.toml").read().replace('flows = "wire.flows"', ""),
         "flows": "actions=drop\\n"}

@pytest.mark.parametrize("dpu", ["wire.toml", {"path": "wire.toml"}, OTHER], indirect=True)
def test_each(dpu):
    dpu.send("p1", PKT)
    assert dpu.pending("p2") or dpu.pending_drops["action_drop"] == 1
''')
    r = run(project)
    r.assert_outcomes(passed=3)           # sub/wire.toml does not exist: found from the rootdir


def test_a_failing_expectation_reads_well_in_pytest(project):
    project.makepyfile(test_fail=HEAD + '''
@pytest.mark.pipeline("wire.toml")
def test_wrong_port(dpu):
    dpu.send("p1", PKT)
    dpu.expect("p2", Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / UDP(dport=8))
''')
    r = run(project)
    r.assert_outcomes(failed=1)
    out = r.stdout.str()
    assert "AssertionError: expect(p2): the packet that left p2 (its #1, a copy of packet 1, sent on p1) " \
           "differs from the expected one in UDP.dport, UDP.chksum:" in out
    assert re.search(r"^E +! UDP\.dport +8 +7 \(echo\)$", out, re.M), out
    assert "harness.py" not in out                     # pytest shows the test's line, not the toolkit's
    assert "softdpu trace of packet 1:" in out and "wire.flows:1" in out


def test_misuse_is_reported_without_a_traceback(project):
    project.makepyfile(test_bad=HEAD + '''
def test_no_marker(dpu):
    pass

@pytest.mark.pipeline("missing.toml")
def test_missing_file(dpu):
    pass

@pytest.mark.pipeline("wire.toml", toml="x")
def test_both(dpu):
    pass

@pytest.mark.pipeline(toml="[[port]]\\nname = 'p1'\\nofport = 0\\ntype = 'pcap'\\n")
def test_bad_config(dpu):
    pass

@pytest.mark.pipeline("wire.toml", flavour="x")
def test_unknown_keyword(dpu):
    pass
''')
    r = run(project, "--strict-markers")
    r.assert_outcomes(errors=5)
    out = r.stdout.str()
    assert "the dpu fixture needs a pipeline: @pytest.mark.pipeline(\"my-pipeline.toml\")" in out
    assert "no pipeline file missing.toml: looked in" in out
    assert "give either a pipeline path or toml= (with flows=), not both" in out
    assert "pipeline.toml:3: port[0].ofport: expected 1..65279, got 0" in out
    assert "During handling" not in out and "Traceback" not in out
    assert "got 1 arguments and flavour keywords" in out


def test_the_marker_is_registered(project):
    r = run(project, "--markers")
    assert "@pytest.mark.pipeline(path=None, *, toml=None, flows=None, batch=None)" in r.stdout.str()


def test_the_entry_point_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"] == {PLUGIN: PLUGIN}
    assert "pytest" in " ".join(meta["project"]["optional-dependencies"]["test"])


def test_the_entry_point_loads_the_plugin(pytester):
    """A dist-info carrying pyproject's pytest11 entry point: pytest loads the plugin with no -p."""
    site = pytester.mkdir("site")
    info = site / "softdpu_plugin_probe-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: softdpu-plugin-probe\nVersion: 0\n")
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    (info / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    proj = pytester.mkdir("proj")
    (proj / "wire.toml").write_text(TOML)
    (proj / "wire.flows").write_text(FLOWS)
    (proj / "test_it.py").write_text(HEAD + '''
@pytest.mark.pipeline("wire.toml")
def test_it(dpu):
    dpu.send("p1", PKT)
    dpu.expect("p2", PKT)
''')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(proj)], cwd=proj,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout


def test_the_installed_softdpu_has_the_entry_point():
    if not installed():
        if os.environ.get("CI"):
            pytest.fail("softdpu is installed without its pytest11 entry point: pip install -e . again")
        pytest.skip("this environment's softdpu was installed before the entry point existed (pip install -e .)")
    ep = next(ep for ep in entry_points(group="pytest11") if ep.name == PLUGIN)
    assert ep.value == PLUGIN and ep.load().dpu
