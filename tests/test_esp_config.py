"""Bad ESP configuration: each mistake is a ConfigError naming the file, line and key.

Also: a key file readable by others is refused; a good key file loads; the
example pipelines' SAs load as written.
"""
import os
import textwrap

import pytest

from softdpu import config
from softdpu.errors import ConfigError

BASE = textwrap.dedent("""\
    [pipeline]
    flows = "x.flows"
    [[port]]
    name = "lan"
    ofport = 1
    type = "pcap"
    [[port]]
    name = "uplink"
    ofport = 2
    type = "pcap"
    mac = "02:00:00:00:00:02"
    """)
SA = {"name": '"a"', "spi": "4097", "direction": '"out"', "mode": '"tunnel"', "aead": '"aes-gcm-128"',
      "key": '"000102030405060708090a0b0c0d0e0f"', "salt": '"01020304"', "local": '"192.0.2.1"',
      "remote": '"192.0.2.2"'}


def _sa(**over):
    v = {**SA, **over}
    return "[[esp.sa]]\n" + "".join(f"{k} = {x}\n" for k, x in v.items() if x is not None)


def _load(tmp_path, text):
    (tmp_path / "x.flows").write_text("priority=0, actions=drop\n")
    p = tmp_path / "x.toml"
    p.write_text(BASE + text)
    return config.load(p)


def _error(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    return info.value


def _line_of(tmp_path, needle):
    lines = (tmp_path / "x.toml").read_text().splitlines()
    return next(n + 1 for n, t in enumerate(lines) if t.startswith(needle))


@pytest.mark.parametrize("key,value,words", [
    ("spi", "255", "256..4294967295"),
    ("spi", '"x"', "256..4294967295"),
    ("direction", '"both"', '"in" or "out"'),
    ("mode", '"beet"', '"tunnel" or "transport"'),
    ("aead", '"aes-cbc"', "one of: aes-gcm-128"),
    ("key", '"00zz"', "the key in hex"),
    ("key", '"0011"', "expected 16 bytes"),
    ("salt", '"0102"', "expected 4 bytes"),
    ("local", '"192.0.2.300"', "IPv4 or IPv6"),
    ("remote", '"2001:db8::1"', "different IP families"),
    ("esn", '"yes"', "true or false"),
    ("ttl", "0", "1..255"),
    ("natt_dport", "70000", "1..65535"),
    ("bogus", "1", "unknown key"),
])
def test_bad_sa_values(tmp_path, key, value, words):
    e = _error(tmp_path, _sa(**{key: value}))
    assert words in str(e)
    assert e.key.startswith("esp.sa[0]")
    assert e.line == _line_of(tmp_path, f"{key} =")


def test_missing_sa_keys(tmp_path):
    e = _error(tmp_path, _sa(local=None))
    assert e.key == "esp.sa[0].local" and "missing" in str(e)
    e = _error(tmp_path, _sa(key=None))
    assert e.key == "esp.sa[0].key" and "key_file" in str(e)


def test_replay_window(tmp_path):
    assert "multiple of 64" in str(_error(tmp_path, _sa(direction='"in"', replay_window="100")))
    assert "5000" in str(_error(tmp_path, _sa(direction='"in"', replay_window="5000")))
    assert 'only an "in" SA' in str(_error(tmp_path, _sa(replay_window="128")))
    cfg = _load(tmp_path, _sa(direction='"in"', replay_window="1024"))
    assert cfg.esp.sas[0].replay_window == 1024


def test_starting_sequence_number(tmp_path):
    """seq: an "out" SA's last sequence number sent; the SA table starts there, the first packet
    carries seq + 1 (test_esp_kernel checks it against the kernel past 2^32)."""
    assert 'only an "out" SA' in str(_error(tmp_path, _sa(direction='"in"', seq="5")))
    e = _error(tmp_path, _sa(seq=str(2**32)))
    assert e.key == "esp.sa[0].seq" and "without esn" in str(e) and e.line == _line_of(tmp_path, "seq =")
    assert "2**63" in str(_error(tmp_path, _sa(seq=str(2**63), esn="true")))
    assert "sequence number" in str(_error(tmp_path, _sa(seq='"7"')))
    cfg = _load(tmp_path, _sa(seq=str(2**32 + 7), esn="true"))
    assert cfg.esp.sas[0].seq == 2**32 + 7
    from softdpu.stages.esp.sa_table import SaTable
    assert SaTable(cfg.esp).seqs[0] == 2**32 + 7
    assert _load(tmp_path, _sa()).esp.sas[0].seq == 0


def test_natt_is_ipv4_only(tmp_path):
    e = _error(tmp_path, _sa(local='"2001:db8::1"', remote='"2001:db8::2"', natt="true"))
    assert "IPv4 only" in str(e) and e.key == "esp.sa[0].natt"


def test_duplicates(tmp_path):
    e = _error(tmp_path, _sa() + _sa())
    assert "duplicate SA name" in str(e) and e.key == "esp.sa[1].name"
    e = _error(tmp_path, _sa() + _sa(name='"b"'))
    assert "already used" in str(e) and e.key == "esp.sa[1].spi"
    _load(tmp_path, _sa() + _sa(name='"b"', direction='"in"'))      # same SPI, other direction: fine


def test_key_file(tmp_path):
    f = tmp_path / "a.key"
    f.write_text("00112233445566778899aabbccddeeff\n0a0b0c0d\n")
    os.chmod(f, 0o644)
    e = _error(tmp_path, _sa(key=None, salt=None, key_file='"a.key"'))
    assert "readable by others" in str(e) and e.key == "esp.sa[0].key_file"
    os.chmod(f, 0o600)
    sa = _load(tmp_path, _sa(key=None, salt=None, key_file='"a.key"')).esp.sas[0]
    assert sa.key == bytes.fromhex("00112233445566778899aabbccddeeff") and sa.salt == bytes.fromhex("0a0b0c0d")
    f.write_text("0011")
    assert "expected 16 key bytes and 4 salt bytes" in str(_error(tmp_path, _sa(key=None, salt=None,
                                                                                key_file='"a.key"')))
    f.write_text("not hex")
    assert "in hex" in str(_error(tmp_path, _sa(key=None, salt=None, key_file='"a.key"')))
    assert "cannot read" in str(_error(tmp_path, _sa(key=None, salt=None, key_file='"nope.key"')))
    assert "not both" in str(_error(tmp_path, _sa(salt=None, key_file='"a.key"')))


POLICY = '[[esp.policy]]\nsa = "a"\nsrc = "10.1.0.0/16"\n'


@pytest.mark.parametrize("extra,words,key", [
    ('sa = "nope"\n', "no [[esp.sa]] named", "esp.policy[0].sa"),
    ('dst = "10.2.0.1/16"\n', "prefix", "esp.policy[0].dst"),
    ('dst = "fd00::/8"\n', "different IP families", "esp.policy[0].dst"),
    ('proto = "sctpx"\n', "protocol number", "esp.policy[0].proto"),
    ('dport = "90-80"\n', "range", "esp.policy[0].dport"),
    ('port = "wan"\n', "no port named", "esp.policy[0].port"),
    ('colour = 1\n', "unknown key", "esp.policy[0].colour"),
])
def test_bad_policies(tmp_path, extra, words, key):
    text = _sa() + POLICY.replace('sa = "a"\n', "") + ('sa = "a"\n' if not extra.startswith("sa =") else "") + extra
    e = _error(tmp_path, text)
    assert words in str(e) and e.key == key
    assert e.line is not None


TUNNEL = textwrap.dedent("""\
    [[port]]
    name = "vx0"
    ofport = 10
    type = "vxlan"
    underlay = "uplink"
    local_ip = "192.0.2.1"
    remote_ip = "192.0.2.2"
    [port.ipsec]
    """)


def test_port_ipsec(tmp_path):
    sas = _sa(name='"o"', mode='"transport"') + _sa(name='"i"', mode='"transport"', direction='"in"')
    cfg = _load(tmp_path, TUNNEL + 'sa_out = "o"\nsa_in = "i"\n' + sas)
    assert [(p.sa, p.port, p.dport) for p in cfg.esp.policies] == [("o", 2, (4789, 4789)), ("i", 0, (4789, 4789))]
    e = _error(tmp_path, TUNNEL + 'sa_out = "o"\n' + sas)
    assert e.key == "port[2].ipsec.sa_in" and e.line == _line_of(tmp_path, "[port.ipsec]")
    e = _error(tmp_path, TUNNEL + 'sa_out = "i"\nsa_in = "i"\n' + sas)
    assert 'must be an "out" transport-mode SA' in str(e)
    e = _error(tmp_path, TUNNEL + 'sa_out = "o"\nsa_in = "zz"\n' + sas)
    assert "no [[esp.sa]] named 'zz'" in str(e)
    e = _error(tmp_path, TUNNEL + 'sa_out = "o"\nsa_in = "i"\nbogus = 1\n' + sas)
    assert "unknown key" in str(e)
    tunnel_sa = _sa(name='"o"') + _sa(name='"i"', mode='"transport"', direction='"in"')
    assert "transport-mode" in str(_error(tmp_path, TUNNEL + 'sa_out = "o"\nsa_in = "i"\n' + tunnel_sa))
    e = _error(tmp_path, TUNNEL.replace('"192.0.2.2"', '"flow"') + 'sa_out = "o"\nsa_in = "i"\n' + sas)
    assert "fixed remote_ip" in str(e)


def test_ipsec_on_a_pcap_port(tmp_path):
    e = _error(tmp_path, "[port.ipsec]\nsa_out = \"o\"\n" + _sa(name='"o"', mode='"transport"'))
    assert "unknown key for a pcap port" in str(e) and e.key == "port[1].ipsec"


def test_examples_load():
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "pipelines"
    gw = config.load(root / "ipsec-gateway.toml")
    assert [s.name for s in gw.esp.sas] == ["to-site-b", "from-site-b", "to-site-c"]
    ov = config.load(root / "ipsec-overlay.toml")
    assert len(ov.esp.policies) == 2
