"""tshark, given the keys (its esp_sa table), decrypts what softdpu encrypts: ICV good, no malformed packet.

Wireshark's ESP dissector is a third, independent implementation.  For AES-GCM
128/256 in tunnel and transport mode, over IPv4, IPv4 with NAT-T and IPv6,
softdpu's outputs are written to a pcap and tshark must, for every packet,
find the inner packet (a wrong key gives none), the next header softdpu
wrote, the sequence number and the inner UDP ports softdpu was given.
(Wireshark 4.0 decrypts AES-GCM but does not check its ICV: scapy's tests do.)  Wireshark 4.0 (Debian 12) has no ChaCha20-Poly1305 for
ESP: those captures must still dissect with no malformed packet.
"""
import re
import subprocess

import pytest
from conftest import need_tool
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from esp_helpers import ADDRS, gateway, host_packet, inner_packet

NETS = [pytest.param(4, False, id="ipv4"), pytest.param(4, True, id="ipv4-natt"), pytest.param(6, False, id="ipv6")]


def _encrypt(tmp_path, aead, mode, family, natt, n=12):
    dpu, sas = gateway(tmp_path, aead, mode, family, natt=natt)
    local, remote, *_ = ADDRS[family]
    b = dpu.batch
    b.clear()
    sent = []
    for k in range(n):
        p = inner_packet(family, 3 * k, k) if mode == "tunnel" else host_packet(local, remote, 3 * k, k)
        sent.append(p)
        b.append(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p), in_port=1)
    dpu.process(b)
    assert b.n_tx == n
    path = tmp_path / "wan.pcap"
    wrpcap(str(path), [Ether(b.packet(int(b.tx[k, 0]))) for k in range(n)])
    return path, sas["out"], sent


def _tshark(path, sa, fields):
    tshark = need_tool("tshark")
    proto = "IPv4" if sa.local.version == 4 else "IPv6"
    algo = "AES-GCM with 16 octet ICV [RFC4106]"
    uat = f'"{proto}","{sa.local}","{sa.remote}","{sa.spi:#010x}","{algo}","0x{(sa.key + sa.salt).hex()}","NULL",""'
    cmd = [tshark, "-r", str(path), "-o", "esp.enable_encryption_decode:TRUE", "-o", f"uat:esp_sa:{uat}",
           "-T", "fields", "-E", "separator=|", "-E", "occurrence=l"] + [a for f in fields for a in ("-e", f)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines()]


@pytest.mark.parametrize("family,natt", NETS)
@pytest.mark.parametrize("mode", ["tunnel", "transport"])
@pytest.mark.parametrize("aead", ["aes-gcm-128", "aes-gcm-256"])
def test_tshark_decrypts_ours(tmp_path, aead, mode, family, natt):
    path, sa, sent = _encrypt(tmp_path, aead, mode, family, natt)
    rows = _tshark(path, sa, ["esp.icv_bad", "esp.protocol", "esp.sequence", "udp.srcport", "udp.dstport",
                              "_ws.malformed", "frame.protocols"])
    assert len(rows) == len(sent)
    for k, (bad, nh, seq, sport, dport, malformed, protocols) in enumerate(rows):
        # Wireshark 4.0 does not check GCM ICVs (icv_good and icv_bad both 0): what shows the
        # decryption right is the inner packet it finds (a wrong key gives "esp:data")
        assert bad in ("0", "False"), f"packet {k}: ICV bad: {rows[k]}"
        inner = ("ip:" if family == 4 else "ipv6:") if mode == "tunnel" else ""
        assert re.search(f":esp:{inner}udp(:data)?$", protocols), protocols
        want_nh = (4 if family == 4 else 41) if mode == "tunnel" else 17
        assert int(nh, 0) == want_nh
        assert int(seq) == k + 1
        assert (int(sport), int(dport)) == (50000 + k, 60000), protocols
        assert malformed == ""


def test_tshark_chacha_dissects_cleanly(tmp_path):
    path, sa, sent = _encrypt(tmp_path, "chacha20-poly1305", "tunnel", 4, False)
    tshark = need_tool("tshark")
    r = subprocess.run([tshark, "-r", str(path), "-Y", "_ws.malformed || _ws.expert.severity >= error"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout
    rows = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "esp.spi", "-e", "esp.sequence"],
                          capture_output=True, text=True, timeout=60).stdout.split("\n")
    assert [line.split("\t")[1] for line in rows if line] == [str(k + 1) for k in range(len(sent))]
