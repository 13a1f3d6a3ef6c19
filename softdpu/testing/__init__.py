"""softdpu.testing: flow tests in pytest — scapy packets in, expectations on what leaves.

    from softdpu.testing import Harness
    dpu = Harness.load("my-pipeline.toml")                 # or Harness.from_text(toml, flows)
    dpu.send("p1", Ether(src=A, dst=B) / IP(dst="10.0.0.2") / TCP(dport=80))
    dpu.expect("p2", Ether(src=A, dst=B) / IP(dst="10.0.0.2", ttl=63) / TCP(dport=80))
    dpu.expect_drop("no_match")
    dpu.advance(300)                                       # seconds, for aging and timeouts
    dpu.expect_nothing_else()

In pytest the `dpu` fixture (plugin.py, registered as a pytest11 entry point)
gives a Harness for `@pytest.mark.pipeline("my-pipeline.toml")`.  Golden
cases (in/PORT.pcap -> expected/PORT.pcap) run with `softdpu check` (check.py).

  harness.py   the Harness: send, expect, expect_drop, expect_nothing_else, advance
  fields.py    two packets compared field by field (the failure messages' tables)
  frames.py    records in and outputs out of a Dpu's batch
  replay.py    `softdpu trace` of a packet for a failure message
  plugin.py    the pytest plugin (the `dpu` fixture, the `pipeline` marker)
  check.py     `softdpu check PIPELINE CASE_DIR...`
"""
from softdpu.testing.harness import START, Harness

__all__ = ["Harness", "START", "load", "from_text"]


def load(path, **kw):
    """A Harness for a pipeline file (Harness.load)."""
    return Harness.load(path, **kw)


def from_text(toml, flows="", **kw):
    """A Harness for a pipeline given as TOML and .flows text (Harness.from_text)."""
    return Harness.from_text(toml, flows, **kw)
