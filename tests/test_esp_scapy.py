"""ESP interop with scapy's independent implementation (scapy.layers.ipsec.SecurityAssociation).

For every AEAD, mode (tunnel: a gateway's traffic selectors; transport: host
to host), ESN off/on (on: the sequence numbers cross 2^32), and IPv4, IPv4
with NAT-T (UDP 4500) and IPv6:
  out: what softdpu encrypts is byte for byte what scapy makes from the same
       packet, sequence number and IV (the IV is the sequence number), and
       scapy decrypts it back to the packet sent;
  in:  what scapy encrypts softdpu decrypts back to the packet scapy was given,
       which then leaves by the flows' port.
Payload sizes cover every padding length (0..3) and a full-size packet.
"""
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from esp_helpers import ADDRS, gateway, host_packet, inner_packet, scapy_sa
from softdpu.stages.esp import libcrypto

AEADS = ["aes-gcm-128", "aes-gcm-256", "chacha20-poly1305"]
NETS = [pytest.param(4, False, id="ipv4"), pytest.param(4, True, id="ipv4-natt"), pytest.param(6, False, id="ipv6")]
SIZES = [0, 1, 2, 3, 4, 17, 100, 1300]
ESN_START = 2**32 - 4            # with ESN: the counter crosses 2^32 in the middle of the batch


def _packets(family, mode, reply=False):
    local, remote, *_ = ADDRS[family]
    out = []
    for n, size in enumerate(SIZES):
        if mode == "tunnel":
            out.append(inner_packet(family, size, n, reply))
        else:
            out.append(host_packet(remote, local, size, n) if reply else host_packet(local, remote, size, n))
    return out


def _l3(pkt):
    return pkt[IP] if IP in pkt else pkt[IPv6]


def _scapy_encrypt(ref, pkt, q, esn):
    ref.seq_num = q & 0xFFFFFFFF
    ref.esn = q >> 32
    return ref.encrypt(pkt, seq_num=q & 0xFFFFFFFF, iv=q.to_bytes(8, "big"), esn_en=esn, esn=q >> 32)


def _backends():
    return ["libcrypto", "reference"] if libcrypto.AVAILABLE else ["reference"]


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("family,natt", NETS)
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
@pytest.mark.parametrize("mode", ["tunnel", "transport"])
@pytest.mark.parametrize("aead", AEADS)
def test_scapy_decrypts_ours(tmp_path, aead, mode, esn, family, natt, backend):
    dpu, sas = gateway(tmp_path, aead, mode, family, esn, natt, backend=backend)
    first = ESN_START if esn else 0
    dpu.esp.table.seqs[0] = first
    b = dpu.batch
    b.clear()
    sent = _packets(family, mode)
    for p in sent:
        b.append(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p), in_port=1)
    dpu.process(b)
    assert b.n_tx == len(sent), dpu.esp.lines()
    ref = scapy_sa(sas["out"])
    for k, p in enumerate(sent):
        assert b.tx[k, 1] == 2
        out = Ether(b.packet(int(b.tx[k, 0])))
        q = first + k + 1
        want = _scapy_encrypt(ref, p, q, esn)
        got = _l3(out)
        assert bytes(got.payload) == bytes(want.payload), f"packet {k}"        # ESP (and NAT-T UDP) bytes
        assert got.src == want.src and got.dst == want.dst
        if family == 4:
            assert got.proto == (17 if natt else 50)
            again = IP(bytes(got))
            del again.chksum
            assert IP(bytes(again)).chksum == got.chksum                      # header checksum right
        else:
            assert got.nh == 50
        ref.esn = q >> 32
        plain = ref.decrypt(IP(bytes(got)) if family == 4 else IPv6(bytes(got)), esn_en=esn, esn=q >> 32)
        assert bytes(plain) == bytes(p), f"packet {k}: scapy decrypted something else"
    c = dpu.esp.counts("out")
    assert c["packets"] == len(sent) and len(c) == 2


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("family,natt", NETS)
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
@pytest.mark.parametrize("mode", ["tunnel", "transport"])
@pytest.mark.parametrize("aead", AEADS)
def test_we_decrypt_scapys(tmp_path, aead, mode, esn, family, natt, backend):
    dpu, sas = gateway(tmp_path, aead, mode, family, esn, natt, backend=backend)
    first = ESN_START if esn else 0
    dpu.esp.table.seqs[1] = first            # as though packets up to `first` had come
    ref = scapy_sa(sas["in"])
    sent = _packets(family, mode, reply=True)
    b = dpu.batch
    b.clear()
    for k, p in enumerate(sent):
        enc = _scapy_encrypt(ref, p, first + k + 1, esn)
        b.append(bytes(Ether(src="02:00:00:00:00:09", dst="02:00:00:00:00:02") / enc), in_port=2)
    dpu.process(b)
    assert b.n_tx == len(sent), dpu.esp.lines()
    for k, p in enumerate(sent):
        assert b.tx[k, 1] == 1
        out = Ether(b.packet(int(b.tx[k, 0])))
        assert out.src == "02:00:00:00:00:09"
        assert bytes(_l3(out)) == bytes(p), f"packet {k}"
    c = dpu.esp.counts("in")
    assert c["packets"] == len(sent) and len(c) == 2
    assert dpu.esp.table.seqs[1] == first + len(sent)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("aead", AEADS)
def test_round_trip_between_two_gateways(tmp_path, aead, backend):
    """Our out SA to a second Dpu's in SA with the same keys (swapped roles), both backends."""
    a, sas = gateway(tmp_path, aead, "tunnel", 4, backend=backend)
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    peer, _ = gateway(b_dir, aead, "tunnel", 4, backend=backend)
    # the peer's "in" SA takes what our "out" SA sends: give it the same SPI, key and addresses
    t = peer.esp.table
    from softdpu.stages.esp.stage import Esp
    cfg = peer.config.esp
    cfg.sas[1].spi, cfg.sas[1].key, cfg.sas[1].salt = sas["out"].spi, sas["out"].key, sas["out"].salt
    cfg.sas[1].local, cfg.sas[1].remote = sas["out"].remote, sas["out"].local
    cfg.policies = []
    peer.esp = Esp(cfg, peer.config.ports, peer.batch.data.shape[0], peer.config.max_frame, backend=backend)
    del t
    batch = a.batch
    batch.clear()
    sent = _packets(4, "tunnel")
    for p in sent:
        batch.append(bytes(Ether() / p), in_port=1)
    a.process(batch)
    wire = [batch.packet(int(batch.tx[k, 0])) for k in range(batch.n_tx)]
    pb = peer.batch
    pb.clear()
    for w in wire:
        pb.append(w, in_port=2)
    peer.process(pb)
    assert pb.n_tx == len(sent)
    for k, p in enumerate(sent):
        assert bytes(_l3(Ether(pb.packet(int(pb.tx[k, 0]))))) == bytes(p)


def test_fallback_when_libcrypto_cannot_be_loaded(tmp_path, monkeypatch):
    """Without libcrypto the stage picks the `cryptography` backend by itself."""
    from softdpu.stages.esp import stage
    monkeypatch.setattr(stage.libcrypto, "AVAILABLE", False)
    dpu, sas = gateway(tmp_path)
    assert dpu.esp.backend == "reference"
    b = dpu.batch
    b.clear()
    p = _packets(4, "tunnel")[3]
    b.append(bytes(Ether() / p), in_port=1)
    dpu.process(b)
    assert bytes(scapy_sa(sas["out"]).decrypt(Ether(b.packet(int(b.tx[0, 0])))[IP])) == bytes(p)
    with pytest.raises(RuntimeError, match="libcrypto could not be loaded"):
        stage.Esp(dpu.config.esp, dpu.config.ports, 8, 1600, backend="libcrypto")


def test_vlan_tags_and_ip_options(tmp_path):
    """A tagged frame and an IPv4 header with options, through tunnel and transport mode both ways."""
    from scapy.layers.l2 import Dot1Q
    for mode, opts in (("tunnel", b"\x94\x04\x00\x00"), ("transport", b"\x94\x04\x00\x00"),
                       ("transport", b"\x01" * 19 + b"\x00")):     # the last: a 40-byte IPv4 header
        d = tmp_path / f"{mode}{len(opts)}"
        d.mkdir()
        dpu, sas = gateway(d, "aes-gcm-128", mode, 4)
        p = _packets(4, mode)[5]
        p[IP].options = opts
        p = IP(bytes(p))
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=42) / p
        b = dpu.batch
        b.clear()
        b.append(bytes(frame), in_port=1)
        dpu.process(b)
        out = Ether(b.packet(int(b.tx[0, 0])))
        assert out[Dot1Q].vlan == 42
        assert bytes(scapy_sa(sas["out"]).decrypt(out[IP])) == bytes(p)
        back = _packets(4, mode, reply=True)[5]
        back[IP].options = opts
        back = IP(bytes(back))
        enc = _scapy_encrypt(scapy_sa(sas["in"]), back, 1, False)
        b.clear()
        b.append(bytes(Ether(src="02:00:00:00:00:09", dst="02:00:00:00:00:02") / Dot1Q(vlan=42) / enc), in_port=2)
        dpu.process(b)
        assert b.n_tx == 1, dpu.esp.lines()
        got = Ether(b.packet(int(b.tx[0, 0])))
        assert got[Dot1Q].vlan == 42 and bytes(got[IP]) == bytes(back)


@pytest.mark.parametrize("l4", ["udp", "tcp", "udp0"])
def test_natt_transport_checksum_fixed_after_a_nat(tmp_path, l4):
    """RFC 3948 3.1.2: the peer (10.9.9.9 behind a NAT) computed its TCP/UDP checksum with its
    private address; the NAT rewrote the outer source to 203.0.113.2.  After decryption the
    checksum must be right for the addresses the packet now has (a UDP checksum of 0 stays 0)."""
    from scapy.layers.inet import TCP
    dpu, sas = gateway(tmp_path, "aes-gcm-128", "transport", 4, natt=True)
    local, remote, *_ = ADDRS[4]
    seg = (UDP(sport=4000, dport=5000) if l4 != "tcp" else TCP(sport=4000, dport=5000, flags="PA")) / (b"n" * 21)
    if l4 == "udp0":
        seg[UDP].chksum = 0
    p = IP(bytes(IP(src="10.9.9.9", dst=local, ttl=60) / seg))
    enc = _scapy_encrypt(scapy_sa(sas["in"]), p, 1, False)
    enc[IP].src = remote                                   # the NAT
    del enc[IP].chksum
    enc = IP(bytes(enc))
    b = dpu.batch
    b.clear()
    b.append(bytes(Ether(src="02:00:00:00:00:09", dst="02:00:00:00:00:02") / enc), in_port=2)
    dpu.process(b)
    assert b.n_tx == 1, dpu.esp.lines()
    got = Ether(b.packet(int(b.tx[0, 0])))[IP]
    kind = TCP if l4 == "tcp" else UDP
    assert got.src == remote and bytes(got[kind].payload) == bytes(p[kind].payload)
    if l4 == "udp0":
        assert got[kind].chksum == 0
    else:
        again = got.copy()
        del again[kind].chksum
        assert IP(bytes(again))[kind].chksum == got[kind].chksum != p[kind].chksum
