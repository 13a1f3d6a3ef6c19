"""README.md "Testing your flows" stays true: its example, taken from the README, runs and passes in pytest.

The section's files (a bold `name` line, then a fenced block) are written
into a fresh directory and run there by pytest in a subprocess, as a
newcomer would after pasting them; they must also be the files shipped in
examples/testing/.  A broken copy of the test must fail, so the run really
checks something.
"""
import re
from pathlib import Path

from test_testing_plugin import run

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "testing"
BLOCK = re.compile(r"^\*\*`([^`]+)`\*\*\n\n```[a-z]*\n(.*?)^```$", re.M | re.S)


def readme_files():
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Testing your flows\n")
    end = text.find("\n## ", start + 1)
    section = text[start: end if end > 0 else len(text)]
    return {name: body for name, body in BLOCK.findall(section)}


def test_the_readme_shows_the_shipped_example():
    files = readme_files()
    assert sorted(files) == ["my-switch.flows", "my-switch.toml", "test_my_switch.py"]
    for name, body in files.items():
        assert (EXAMPLE / name).read_text() == body, f"README.md and examples/testing/{name} differ"


def test_the_readme_example_runs(pytester):
    for name, body in readme_files().items():
        (pytester.path / name).write_text(body)
    r = run(pytester)
    r.assert_outcomes(passed=3)


def test_a_broken_copy_of_the_example_fails(pytester):
    files = readme_files()
    files["test_my_switch.py"] = files["test_my_switch.py"].replace('dpu.expect_drop("action_drop")',
                                                                    'dpu.expect("p2", udp(A, B))')
    for name, body in files.items():
        (pytester.path / name).write_text(body)
    r = run(pytester)
    r.assert_outcomes(passed=2, failed=1)
    assert "expect(p2): nothing (more) left p2; expected:" in r.stdout.str()


def test_the_example_pipeline_loads():
    """The example is a pipeline like any other (with no default input: tests send its packets)."""
    from softdpu import config
    cfg = config.load(EXAMPLE / "my-switch.toml")
    assert [p.name for p in cfg.ports] == ["p1", "p2", "p3"] and cfg.mac_aging == 60


def test_the_failure_shown_in_the_readme_is_what_the_toolkit_prints(monkeypatch):
    """Every line of the README's failure excerpt (but its "...") is in the real message, in order."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from softdpu.testing import load

    text = (ROOT / "README.md").read_text()
    start = text.index("A failed expectation says")
    block = text[text.index("```\n", start) + 4: text.index("\n```", text.index("```\n", start) + 4)]
    shown = [x for x in block.splitlines() if x.strip() != "..."]
    monkeypatch.chdir(ROOT)
    dpu = load("examples/testing/my-switch.toml")

    def udp(dport):
        return (Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / IP(src="10.0.0.1", dst="10.0.0.2")
                / UDP(sport=1234, dport=dport))
    dpu.send("p1", udp(53))
    try:
        dpu.expect("p2", udp(80))
    except AssertionError as e:
        actual = str(e).splitlines()
    else:
        raise AssertionError("the expectation should have failed")
    k = 0
    for line in shown:
        while k < len(actual) and actual[k] != line:
            k += 1
        assert k < len(actual), f"README line not in the message (in order): {line!r}\n" + "\n".join(actual)
