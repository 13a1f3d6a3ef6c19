"""Known-answer tests: published ESP packets that softdpu must decrypt to the published plaintext.

AES-GCM: the ESP test cases of draft-mcgrew-gcm-test-01 (RFC 4106 itself has
none): key, SPI, sequence number (8 bytes: ESN), salt | IV, the plaintext
(payload, padding, pad length, next header) and the ESP packet.  Cases with
AES-192, SPI 0 (reserved) or a 64-bit sequence number at or over 2^63 are left
out (softdpu refuses those SAs / counters).  ChaCha20-Poly1305: the ESP
example of RFC 7634 appendix A (tunnel mode, an ICMP echo), and the AEAD
vector of RFC 8439 2.8.2 (its nonce and AAD have the shape of an ESP nonce and
an ESN AAD) through both crypto backends.
"""
import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether

from esp_helpers import gateway
from softdpu.stages.esp import libcrypto
from softdpu.stages.esp.jobs import J_AAD_LEN, J_OK, J_ROW, J_SA, J_TEXT, J_TEXT_LEN, Jobs
from softdpu.stages.esp.reference import Reference


def h(text):
    return bytes.fromhex("".join(text.split()))


# (key, spi, seq, salt|IV, plaintext, ESP packet), draft-mcgrew-gcm-test-01 section 4
GCM = [
    ("feffe9928665731c6d6a8f9467308308", 0x0000A5F8, "0000000a", "cafebabefacedbaddecaf888",
     """4500003e698f000080114dccc0a80102 c0a801010a980035002a2343b2d00100
        00010000000000000373697009637962 65726369747902646b00000100010001""",
     """0000a5f80000000afacedbaddecaf888 deb22cd9b07c72c16e3a65beeb8df304
        a5a5897d33ae530f1ba76d5d114d2a5c 3de81827c10e9a4f51330d0eec416642
        cfbb85a5b47e48a4ec3b9ba95d918bd1 83b70d3aa8bc6ee4c309e9d85a41ad4a"""),
    ("abbccddef00112233445566778899aababbccddef00112233445566778899aab", 0x4A2CBFE3, "00000002",
     "112233440102030405060708",
     """4500003069a6400080062690c0a80102 9389155e0a9e008b2dc57ee000000000
        7002400020bf0000020405b401010402 01020201""",
     """4a2cbfe3000000020102030405060708 ff425c9b724599df7a3bcd510194e00d
        6a78107f1b0b1cbf06efae9d65a5d763 748a637985771d347f0545659f14e99d
        ef842d8eb335f4eecfdbf831824b4c49 15956c96"""),
    ("3de09874b388e6491988d0c3607eae1f", 0x42F67E3F, "1010101010101010", "57690e434e280000a2fca1a3",
     """4500003c99c300008001cb7c40679318 010101010800085c0200430061626364
        65666768696a6b6c6d6e6f7071727374 75767761626364656667686901020201""",
     """42f67e3f101010104e280000a2fca1a3 fba2caa4853cf9f0f22cb10d86dd83b0
        fec75691cf1a04b00d1138ec9c357917 65acbd8701ad79845bf9fe3fba487bc9
        1755e6662b4c8d0d1f5e22739530320a e0d731cc978ecafaeae88f00e80d6e48"""),
    ("3de09874b388e6491988d0c3607eae1f", 0x42F67E3F, "1010101010101010", "57690e434e280000a2fca1a3",
     """4500001c42a200008001441f406793b6 e00000020a00f5ff01020201""",
     """42f67e3f101010104e280000a2fca1a3 fba2ca845e5df9f0f22c3e6e86dd831e
        1fc65792cd1af9130e1379ed369f071f 35e034be95f112e4e7d05d35"""),
    ("abbccddef00112233445566778899aab", 0x00000100, "0000000000000001", "decaf888cafedebaceface74",
     """4500004933ba00007f119106c3fb1d10 c2b1d326c02831ce0035dd7b800302d5
        00004e20001e8c18d75b81dc91baa047 6b91b924b280389d92c963bac046ec95
        9b6266c04722b14923010101""",
     """0000010000000001cafedebaceface74 18a6fd42f72cbf4ab2a2ea901f73d814
        e3e7f243d95412e1c349c1d2fbec168f 9190feebaf2cb01984e65863965d7472
        b79da345e0e780191f0d2f0e0f496c22 6f2127b27db35724e7845d68651f57e6
        5f354f75ff17015769623436"""),
    ("abbccddef00112233445566778899aababbccddef00112233445566778899aab", 0x17405E67, "156f3126dd0db99b",
     "73616c74616e640169766563",
     """45080028732c00004006e9f90a010612 0a01038f06b88023dd6bafbecb712602
        50101f646d540001""",
     """17405e67dd0db99b616e640169766563 f2d69ecdbd5a0d5b8d5ef38bad4da58d
        1f278fde98ef67549d524a3018d9a57f f4d3a31ce673119e451626c2415771e3
        b7eebca614c89b35"""),
    ("3de09874b388e6491988d0c3607eae1f", 0x42F67E3F, "1010101010101010", "57690e434e280000a2fca1a3",
     """45000049333e00007f119182c3fb1d10 c2b1d326c02831ce0035cb458003025b
        000001e0001e8c18d65759d52284a035 2c71475c8880391c764d6e5ee0496b32
        5ae270c03899493915010101""",
     """42f67e3f101010104e280000a2fca1a3 fba2cad12fc1f9f00d3cebf305410db8
        3d7784b607323d220f24b0a97d541828 00cadb0f68d99ef0e0c0c89ae9bea888
        4e52d65bc1afd0740f742444747b5b39 ab533163aad4550ee5160975cdb608c5
        769189609763b8e18caa81e2"""),
    ("abbccddef00112233445566778899aababbccddef00112233445566778899aab", 0x17405E67, "156f3126dd0db99b",
     "73616c74616e640169766563",
     """636973636f0172756c65730174686501 6e6574776501646566696e6501746865
        746563686e6f6c6f6769657301746861 7477696c6c01646566696e65746f6d6f
        72726f7701020201""",
     """17405e67dd0db99b616e640169766563 d4b7ed86a1777f2ea13d6973d324c69e
        7b43f826fb56831226508bebd2dceb18 d0a6df10e5487df074113e14c641024e
        3e6773d91a62ee429b043a10e3efe6b0 12a49363412364f8c0cac587f249e56b
        11e24f30e44ccc76"""),
    ("7d773d00c144c525ac619d18c84a3f47", 0x335467AE, "ffffffff", "d966426743457e9182443bc6",
     "01020201",
     """335467aeffffffff43457e9182443bc6 437f866bcb3f699fe9b0822bac961c45 04bef270"""),
    ("abbccddef00112233445566778899aab", 0x00000100, "0000000000000001", "decaf888cafedebaceface74",
     "746f016265016f72016e6f7401746f01 62650001",
     """0000010000000001cafedebaceface74 29c9fc69a197d038ccdd14e2ddfcaa05
        43332164412503524303ed3c6c5f2838 43af8c3e"""),
]

# RFC 7634 appendix A: key | salt, SPI 0x01020304, seq 5, IV 1011121314151617, tunnel mode
RFC7634 = dict(
    key="808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", salt="a0a1a2a3",
    spi=0x01020304, seq=5, iv="1011121314151617",
    plain="""45000054a6f200004001e778c6336405 c000020508005b7a3a080000553bec10
             00073627080 90a0b0c0d0e0f10111213 1415161718191a1b1c1d1e1f20212223
             2425262728292a2b2c2d2e2f30313233 3435363701020204""",
    sealed="""24039428b97f417e3c13753a4f05087b 67c352e6a7fab1b982d466ef407ae5c6
              14ee8099d52844eb61aa95dfab4c02f7 2aa71e7c4c4f64c9befe2facc638e8f3
              cbec163fac469b502773f6fb94e664da 9165b82829f641e0
              76aaa8266b7fb0f7b11b369907e1ad43""")


def _run(tmp_path, aead, key, salt, spi, seq_hex, esp_packet, mode):
    esn = len(seq_hex) == 16
    q = int(seq_hex, 16)
    dpu, sas = gateway(tmp_path, aead, mode, 4, esn=esn, policies=False)
    sa = dpu.config.esp.sas[1]                              # the "in" SA, made the vector's
    sa.key, sa.salt, sa.spi = bytes.fromhex(key), bytes.fromhex(salt), spi
    from softdpu.stages.esp.stage import Esp
    dpu.esp = Esp(dpu.config.esp, dpu.config.ports, dpu.batch.data.shape[0], dpu.config.max_frame)
    dpu.esp.table.seqs[1] = q - 1                          # the window's top just before it
    b = dpu.batch
    b.clear()
    outer = IP(src="203.0.113.2", dst="198.51.100.1", proto=50) / esp_packet
    b.append(bytes(Ether() / outer), in_port=2)
    dpu.process(b)
    return dpu, b


@pytest.mark.parametrize("case", range(len(GCM)))
def test_gcm_esp_vectors(tmp_path, case):
    key, spi, seq, nonce, plain, packet = GCM[case]
    plain, packet = h(plain), h(packet)
    aead = "aes-gcm-128" if len(key) == 32 else "aes-gcm-256"
    dpu, b = _run(tmp_path, aead, key, nonce[:8], spi, seq, packet, "transport")
    assert b.n_tx == 1, dpu.esp.lines()
    out = Ether(b.packet(int(b.tx[0, 0])))
    pad = plain[-2]
    assert out[IP].proto == plain[-1]                       # the next header
    assert bytes(out[IP].payload) == plain[: len(plain) - 2 - pad]


def test_rfc7634_esp_example(tmp_path):
    v = RFC7634
    packet = v["spi"].to_bytes(4, "big") + v["seq"].to_bytes(4, "big") + h(v["iv"]) + h(v["sealed"])
    dpu, b = _run(tmp_path, "chacha20-poly1305", v["key"], v["salt"], v["spi"], "00000005", packet, "tunnel")
    assert b.n_tx == 1, dpu.esp.lines()
    plain = h(v["plain"])
    assert bytes(Ether(b.packet(int(b.tx[0, 0])))[IP]) == plain[:-4]     # less padding 01 02, 2, 4


class _Sa:
    def __init__(self, aead, key, direction):
        self.aead, self.key, self.direction, self.name = aead, key, direction, "kat"


RFC8439 = dict(key=bytes(range(0x80, 0xA0)), nonce=h("070000004041424344454647"),
               aad=h("50515253c0c1c2c3c4c5c6c7"),
               plain=b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
                     b"sunscreen would be it.",
               sealed=h("""d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
                           3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
                           92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
                           3ff4def08e4b7a9de576d26586cec64b6116 1ae10b594f09e26a7e902ecbd0600691"""))


def _backend(name, sa):
    return libcrypto.Contexts([sa]) if name == "libcrypto" else Reference([sa])


BACKENDS = ["libcrypto", "reference"] if libcrypto.AVAILABLE else ["reference"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("direction", ["out", "in"])
def test_rfc8439_aead_vector(backend, direction):
    import numpy as np
    v = RFC8439
    crypto = _backend(backend, _Sa("chacha20-poly1305", v["key"], direction))
    jobs = Jobs(2)
    data = np.zeros((2, 512), np.uint8)
    src = v["plain"] if direction == "out" else v["sealed"]
    data[1, 40: 40 + len(src)] = np.frombuffer(src, np.uint8)
    jobs.jobs[0, [J_ROW, J_SA, J_TEXT, J_TEXT_LEN, J_AAD_LEN]] = 1, 0, 40, len(v["plain"]), 12
    jobs.jobs[0, J_OK] = 0 if direction == "out" else -1
    jobs.nonce[0, :12] = np.frombuffer(v["nonce"], np.uint8)
    jobs.aad[0, :12] = np.frombuffer(v["aad"], np.uint8)
    crypto.run(jobs.jobs, 1, data, jobs.nonce, jobs.aad)
    assert jobs.jobs[0, J_OK] == 1
    want = v["sealed"] if direction == "out" else v["plain"]
    assert bytes(data[1, 40: 40 + len(want)]) == want
    if direction == "in":                                   # a flipped tag bit is refused
        data[1, 40: 40 + len(src)] = np.frombuffer(src, np.uint8)
        data[1, 40 + len(src) - 1] ^= 1
        jobs.jobs[0, J_OK] = -1
        crypto.run(jobs.jobs, 1, data, jobs.nonce, jobs.aad)
        assert jobs.jobs[0, J_OK] == 0
