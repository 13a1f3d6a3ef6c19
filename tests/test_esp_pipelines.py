"""ESP in whole pipelines: two VTEPs with [port.ipsec] talk through each other's outputs, and the
example pipelines' golden ESP outputs are what scapy, given the keys, decrypts to the inputs.
"""
import textwrap
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import rdpcap

from softdpu.pipeline import Dpu

ROOT = Path(__file__).resolve().parent.parent
K1, S1 = "00112233445566778899aabbccddeeff", "01020304"
K2, S2 = "ffeeddccbbaa99887766554433221100", "05060708"


def _vtep(tmp_path, name, local, remote, out_key, in_key, kind, aead="aes-gcm-128"):
    d = tmp_path / name
    d.mkdir()
    (d / "v.flows").write_text("in_port=1, actions=output:10\nin_port=10, actions=output:1\n")
    key_len = 16 if aead == "aes-gcm-128" else 32
    ok, ik = (out_key[0] * (key_len // 16), out_key[1]), (in_key[0] * (key_len // 16), in_key[1])
    (d / "v.toml").write_text(textwrap.dedent(f"""\
        [pipeline]
        flows = "v.flows"
        [[port]]
        name = "vm"
        ofport = 1
        type = "pcap"
        [[port]]
        name = "uplink"
        ofport = 2
        type = "pcap"
        mac = "02:00:00:00:00:{name}"
        [[port]]
        name = "t0"
        ofport = 10
        type = "{kind}"
        underlay = "uplink"
        local_ip = "{local}"
        remote_ip = "{remote}"
        key = 77
        [port.ipsec]
        sa_out = "out"
        sa_in = ["in"]
        [[neighbor]]
        ip = "{remote}"
        mac = "02:00:00:00:01:{name}"
        [[esp.sa]]
        name = "out"
        spi = 0x3001
        direction = "out"
        mode = "transport"
        aead = "{aead}"
        key = "{ok[0]}"
        salt = "{ok[1]}"
        local = "{local}"
        remote = "{remote}"
        [[esp.sa]]
        name = "in"
        spi = 0x3001
        direction = "in"
        mode = "transport"
        aead = "{aead}"
        key = "{ik[0]}"
        salt = "{ik[1]}"
        local = "{local}"
        remote = "{remote}"
        """))
    return Dpu.load(d / "v.toml")


@pytest.mark.parametrize("aead", ["aes-gcm-128", "chacha20-poly1305"])
@pytest.mark.parametrize("kind,family", [("vxlan", 4), ("geneve", 4), ("vxlan", 6)])
def test_two_vteps_talk_through_esp(tmp_path, kind, family, aead):
    la, lb = ("192.0.2.1", "192.0.2.2") if family == 4 else ("2001:db8::1", "2001:db8::2")
    a = _vtep(tmp_path, "aa", la, lb, (K1, S1), (K2, S2), kind, aead)
    b = _vtep(tmp_path, "bb", lb, la, (K2, S2), (K1, S1), kind, aead)
    frames = [bytes(Ether(src="02:00:00:00:0a:01", dst="02:00:00:00:0b:01") / IP(src="10.0.0.1", dst="10.0.0.2") /
                    UDP(sport=5000 + n, dport=6000) / (b"v" * (n * 37 % 900))) for n in range(20)]
    batch = a.batch
    batch.clear()
    for f in frames:
        batch.append(f, in_port=1)
    a.process(batch)
    assert batch.n_tx == len(frames), a.esp.lines()
    wire = [batch.packet(int(batch.tx[k, 0])) for k in range(batch.n_tx)]
    for w in wire:                                        # ESP on the wire, not VXLAN/Geneve
        e = Ether(w)
        assert (e[IP].proto if family == 4 else e.payload.nh) == 50
    bb = b.batch
    bb.clear()
    for w in wire:
        bb.append(w, in_port=2)
    b.process(bb)
    assert [bb.packet(int(bb.tx[k, 0])) for k in range(bb.n_tx)] == frames, b.esp.lines()
    assert all(int(bb.tx[k, 1]) == 1 for k in range(bb.n_tx))
    # the same VXLAN/Geneve in plaintext from the peer is refused
    plain = b.batch
    plain.clear()
    c = _vtep(tmp_path, "cc", la, lb, (K1, S1), (K2, S2), kind, aead)    # A again, fresh counters
    c.esp.table.pol[:] = 0                                                 # ...without its policies
    c.esp.table.n_pol = 0
    cb = c.batch
    cb.clear()
    cb.append(frames[0], in_port=1)
    c.process(cb)
    plain.append(cb.packet(int(cb.tx[0, 0])), in_port=2)
    b.process(plain)
    assert plain.n_tx == 0 and b.esp.counts("in")["esp_unprotected"] == 1


def _sa_of(pipeline, name, spi=None):
    import tomllib
    doc = tomllib.loads((ROOT / "pipelines" / pipeline).read_text())
    s = next(s for s in doc["esp"]["sa"] if s["name"] == name)
    algo = "CHACHA20-POLY1305" if s["aead"].startswith("chacha") else "AES-GCM"
    tunnel = IP(src=s["local"], dst=s["remote"]) if s["mode"] == "tunnel" else None
    return SecurityAssociation(ESP, spi=s["spi"], crypt_algo=algo, crypt_key=bytes.fromhex(s["key"] + s["salt"]),
                               tunnel_header=tunnel, esn_en=s.get("esn", False)), s["spi"]


def test_overlay_golden_uplink_is_the_vms_frames_in_esp():
    ref, spi = _sa_of("ipsec-overlay.toml", "to-b")
    vm_in = [bytes(p) for p in rdpcap(str(ROOT / "fixtures/pcaps/ipsec-overlay-p1.pcap"))]
    out = [p for p in rdpcap(str(ROOT / "fixtures/golden/ipsec-overlay/expected/uplink.pcap")) if ESP in p]
    assert len(out) == 3                                   # ARP, ICMP, TCP; the 1400-byte one: esp_mtu
    for n, p in enumerate(out):
        assert p[ESP].spi == spi and p[ESP].seq == n + 1
        plain = ref.decrypt(p[IP])
        assert plain[UDP].dport == 4789 and plain[VXLAN].vni == 5000
        assert bytes(plain[VXLAN].payload) == vm_in[n]


def test_gateway_golden_wan_decrypts_to_the_lan_packets():
    to_b, spi_b = _sa_of("ipsec-gateway.toml", "to-site-b")
    to_c, spi_c = _sa_of("ipsec-gateway.toml", "to-site-c")
    lan = rdpcap(str(ROOT / "fixtures/pcaps/ipsec-gateway-lan.pcap"))
    wan = rdpcap(str(ROOT / "fixtures/golden/ipsec-gateway/expected/wan.pcap"))
    assert len(wan) == len(lan)
    for sent, out in zip(lan, wan):
        dst = sent[IP].dst
        if dst.startswith("10.2."):
            assert out[ESP].spi == spi_b
            to_b.esn = 0
            inner = to_b.decrypt(out[IP], esn_en=True, esn=0)
        elif dst == "10.3.0.10":
            assert out[ESP].spi == spi_c
            inner = to_c.decrypt(out[IP])
        else:
            assert ESP not in out
            inner = out[IP]
        assert bytes(inner) == bytes(sent[IP])            # the flows only rewrote the MACs
        assert out.src == "02:00:00:00:00:02" and out.dst == "02:00:00:00:00:99"


def test_trace_shows_esp_steps(tmp_path):
    from softdpu.trace import Tracer, explain
    dpu = Dpu.load(ROOT / "pipelines" / "ipsec-overlay.toml")
    tracer = Tracer(dpu, {2, 3, 5, 11})
    dpu.tracer = tracer
    dpu.run_pcaps(out_dir=tmp_path)
    names = {p.ofport: p.name for p in dpu.ports}
    text = {t.number: explain(t, dpu.flows.program, names, bridge="x") for t in tracer.traces}
    two = "\n".join(text[2][0])
    assert "Decrypted by ESP SA from-b (spi 0x2001, transport mode, aes-gcm-128, seq 1)" in two
    assert "Decapsulated by vx0" in two and two.endswith("Result: sent to p1")
    assert text[2][1]["decrypted"].startswith("Decrypted by ESP SA from-b")
    three = "\n".join(text[3][0])
    assert "Encrypted by ESP SA to-b (spi 0x1001, transport mode, aes-gcm-128, seq 2); out of uplink" in three
    assert text[3][1]["esp"][0]["encrypted"].startswith("Encrypted by ESP SA to-b")
    assert "Result: dropped before the flow tables: esp_replay" in "\n".join(text[5][0])
    assert "\n".join(text[11][0]).endswith("Result: dropped: esp_mtu (with the ESP overhead the packet "
                                           "would exceed the port's MTU)")
    assert text[11][1]["drop"]["reason"] == "esp_mtu"


def test_softdpu_run_reports_per_sa(tmp_path):
    import io
    from softdpu.cli import main
    out = io.StringIO()
    assert main(["run", str(ROOT / "pipelines" / "ipsec-overlay.toml"), "--out-dir", str(tmp_path),
                 "--no-progress"], out=out) == 0
    text = out.getvalue()
    assert "esp sa to-b (out, spi 0x1001, transport, aes-gcm-128): encrypted 3 packets" in text
    assert "esp sa from-b (in, spi 0x2001, transport, aes-gcm-128): decrypted 3 packets" in text
    for reason in ("esp_replay", "esp_icv", "esp_unknown_spi", "esp_unprotected", "esp_mtu"):
        assert f"drop {reason}" in text
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "pipelines" / "ipsec-overlay.toml").read_text().replace('aead = "aes-gcm-128"\nkey',
                                                                                 'aead = "aes-gcm-512"\nkey', 1)
                   .replace('"../', f'"{ROOT}/'))
    (tmp_path / "ipsec-overlay.flows").write_text((ROOT / "pipelines" / "ipsec-overlay.flows").read_text())
    err = io.StringIO()
    import contextlib
    with contextlib.redirect_stderr(err):
        status = main(["run", str(bad), "--out-dir", str(tmp_path / "o"), "--no-progress"], out=err)
    assert status != 0 and "esp.sa[0].aead" in err.getvalue() and "bad.toml:" in err.getvalue()


def test_rekey_two_inbound_sas_on_a_tunnel(tmp_path):
    """sa_in may list several SAs (old and new keys during a rekey): both are taken."""
    from softdpu.stages.esp.stage import Esp
    a = _vtep(tmp_path, "aa", "192.0.2.1", "192.0.2.2", (K1, S1), (K2, S2), "vxlan")
    _vtep(tmp_path, "bb", "192.0.2.2", "192.0.2.1", (K2, S2), (K1, S1), "vxlan")
    # b gets a second inbound SA (new key, SPI 0x3002); a's out SA moves to it half-way
    text = (tmp_path / "bb" / "v.toml").read_text()
    text = text.replace('sa_in = ["in"]', 'sa_in = ["in", "in2"]') + textwrap.dedent(f"""\
        [[esp.sa]]
        name = "in2"
        spi = 0x3002
        direction = "in"
        mode = "transport"
        aead = "aes-gcm-128"
        key = "{K2}"
        salt = "{S2}"
        local = "192.0.2.2"
        remote = "192.0.2.1"
        """)
    (tmp_path / "bb" / "v.toml").write_text(text)
    b = Dpu.load(tmp_path / "bb" / "v.toml")
    frame = bytes(Ether(src="02:00:00:00:0a:01", dst="02:00:00:00:0b:01") / IP(src="10.0.0.1", dst="10.0.0.2") /
                  UDP(sport=5000, dport=6000) / (b"r" * 30))
    wire = []
    for spi, key, salt in ((0x3001, K1, S1), (0x3002, K2, S2)):
        sa = a.config.esp.sas[0]                                    # a's out SA: old, then new keys
        sa.spi, sa.key, sa.salt = spi, bytes.fromhex(key), bytes.fromhex(salt)
        a.esp = Esp(a.config.esp, a.config.ports, a.batch.data.shape[0], a.config.max_frame)
        batch = a.batch
        batch.clear()
        batch.append(frame, in_port=1)
        a.process(batch)
        wire.append(batch.packet(int(batch.tx[0, 0])))
    bb = b.batch
    bb.clear()
    for w in wire:
        bb.append(w, in_port=2)
    b.process(bb)
    assert [bb.packet(int(bb.tx[k, 0])) for k in range(bb.n_tx)] == [frame, frame], b.esp.lines()
    assert b.esp.counts("in")["packets"] == 1 and b.esp.counts("in2")["packets"] == 1
