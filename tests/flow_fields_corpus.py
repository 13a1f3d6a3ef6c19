"""Match strings for tests/test_flow_fields.py: which ovs-ofctl takes, which it
refuses, which softdpu refuses on purpose (and why), and seeded random lines."""
import ipaddress
import random

TCP_FLAG_NAMES = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns", "[200]", "[400]", "[800]"]
CT_FLAG_NAMES = ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"]

# -- the corpus ----------------------------------------------------------------------

VALID = [
    "", "in_port=1", "in_port=65279", "in_port=0", "in_port=LOCAL", "in_port=local", "in_port=CONTROLLER",
    "in_port=05", "in_port=*", "in_port=65280", "in_port=65535", "in_port=ANY", "in_port=none",
    "in_port=4294967294", "in_port=4294967040", "in_port_oxm=5",
    "dl_src=00:11:22:33:44:55", "dl_dst=ff:ff:ff:ff:ff:ff", "dl_src=AA:BB:cc:dd:ee:0F",
    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", "dl_src=aa:bb:cc:dd:ee:ff/ff:ff:ff:00:00:00",
    "dl_src=1:2:3:4:5:6", "dl_dst=aa:bb:cc:dd:ee:ff/00:00:00:00:00:00", "eth_src=00:00:00:00:00:01",
    "eth_dst=00:00:00:00:00:02,eth_type=0x0800",
    "dl_type=0x0800", "dl_type=0x86dd", "dl_type=2054", "dl_type=0x88cc", "dl_type=0x800/0xffff",
    "dl_type=0x800/0", "dl_type=*",
    "dl_vlan=5", "dl_vlan=0", "dl_vlan=4095", "dl_vlan=0xffff", "dl_vlan_pcp=3", "dl_vlan_pcp=0",
    "dl_vlan=100,dl_vlan_pcp=7", "dl_vlan_pcp=7,dl_vlan=100", "vlan_tci=0x1005/0x1fff",
    "vlan_tci=0", "vlan_tci=0x1000/0x1000", "vlan_tci=0xe005", "vlan_tci=0x0000/0x1000",
    "vlan_tci=0x1005/0x1fff,dl_vlan_pcp=3", "vlan_vid=0x1005", "vlan_vid=5", "vlan_vid=0x1000/0x1000",
    "vlan_pcp=2", "dl_vlan=5,vlan_pcp=3", "vlan_tci=0x1000/0x1000,dl_vlan_pcp=5",
    "ip", "ipv4", "ip4", "ipv6", "ip6", "tcp", "udp", "icmp", "icmp6", "tcp6", "udp6", "sctp",
    "sctp6", "arp", "rarp", "mpls", "mplsm",
    "ip,tcp", "ip,dl_type=0x0800", "dl_type=0x0800,ip", "tcp,nw_proto=6", "ipv6,tcp6",
    "dl_type=0x0800,nw_proto=6,tp_dst=80", "ipv6,nw_proto=58,icmp_type=135",
    "ip,nw_src=10.0.0.1", "ip,nw_dst=10.0.0.0/8", "ip,nw_src=10.1.2.3/255.255.0.0",
    "ip,nw_src=1.2.3.4/255.0.255.0", "ip,nw_src=10.0.0.0/0", "ip,nw_dst=192.168.1.1/32",
    "ip,nw_src=010.0.0.1", "ip,nw_src=1.2.3.4/032", "ip,ip_src=1.2.3.4,ip_dst=5.6.7.0/24",
    "ip,nw_proto=47", "ip,ip_proto=89", "ip,nw_tos=184", "ip,nw_tos=0", "ip,nw_ecn=3",
    "ip,nw_tos=4,nw_ecn=1", "ip,ip_dscp=46", "ip,ip_ecn=2", "ipv6,nw_tos=32", "ip,nw_ttl=64",
    "ip,nw_ttl=0", "ipv6,nw_ttl=255", "ip,nw_ttl=5/255", "ip,nw_ttl=5/0",
    "ip,nw_frag=yes", "ip,nw_frag=no", "ip,nw_frag=first", "ip,nw_frag=later", "ip,nw_frag=not_later",
    "ipv6,nw_frag=later", "ip,ip_frag=YES", "udp,nw_frag=first,tp_dst=53",
    "tcp,tp_dst=80", "tcp,tp_src=1024/0xfc00", "tcp,tp_dst=0x1000/0xf000", "udp,tp_src=53,tp_dst=53",
    "sctp,tp_dst=5", "tcp6,tp_dst=443", "udp6,tp_src=546,tp_dst=547", "sctp6,tp_src=1/1",
    "tcp,tp_dst=80/0", "tcp,tcp_dst=22", "udp,udp_src=68", "sctp,sctp_dst=9",
    "tcp6,tcp_src=1", "tcp,tp_dst=0X50", "tcp,tp_dst=0x00000000000000000050",
    "tcp,tcp_flags=+syn", "tcp,tcp_flags=+syn-ack", "tcp,tcp_flags=-fin-syn-rst", "tcp,tcp_flags=0x12/0xff",
    "tcp,tcp_flags=0x002", "tcp,tcp_flags=syn|ack", "tcp,tcp_flags=0", "tcp,tcp_flags=0xfff",
    "tcp,tcp_flags=+ns+[200]", "tcp6,tcp_flags=+rst", "tcp,tcp_flags=0/0",
    "icmp,icmp_type=8", "icmp,icmp_type=3,icmp_code=1", "icmp,icmp_code=0", "icmp,icmp_type=3/0xff",
    "icmp6,icmp_type=135", "icmp6,icmpv6_type=128,icmpv6_code=0", "icmp,tp_src=8", "icmp6,tp_dst=0",
    "arp,arp_op=1", "arp,arp_op=2", "rarp,arp_op=3", "arp,arp_spa=10.0.0.1", "arp,arp_tpa=10.0.0.0/24",
    "arp,arp_sha=00:11:22:33:44:55", "arp,arp_tha=00:00:00:00:00:00",
    "arp,arp_sha=00:11:22:33:44:55/ff:ff:ff:00:00:00", "arp,nw_src=1.2.3.4", "arp,nw_dst=1.2.3.0/24",
    "arp,nw_proto=1", "rarp,arp_spa=1.1.1.1,arp_tpa=2.2.2.2",
    "ipv6,ipv6_src=2001:db8::1", "ipv6,ipv6_dst=2001:db8::/32", "ipv6,ipv6_src=::/0",
    "ipv6,ipv6_src=fe80::/10", "ipv6,ipv6_dst=::1/128", "ipv6,ipv6_src=2001:db8::/ffff:0:ffff::",
    "ipv6,ipv6_src=::ffff:1.2.3.4", "ipv6,ipv6_src=2001:DB8::1", "ipv6,ipv6_dst=2001:db8::1/64",
    "ipv6,ipv6_src=2001:db8:0:0:8000::/65", "ipv6,ipv6_label=0x12345", "ipv6,ipv6_label=0xfffff/0xf",
    "ipv6,ipv6_label=1/0xffffffff", "tcp6,ipv6_src=2001:db8::1,ipv6_dst=2001:db8::2,tp_dst=22",
    "ct_state=+trk", "ct_state=+trk+new", "ct_state=+trk+est-rel", "ct_state=-trk",
    "ct_state=+trk+new+est+rel+rpl+inv+snat+dnat", "ct_state=new|trk", "ct_state=0x21",
    "ct_state=0x21/0x21", "ct_state=33/0x21", "ct_state=0", "ct_state=0/0", "ct_state=+snat+dnat",
    "ct_zone=5", "ct_zone=0xffff", "ct_zone=5/0xffff", "ct_mark=5", "ct_mark=5/0xf",
    "ct_mark=0xffffffff", "ct_label=0x1", "ct_label=0x1/0xff",
    "ct_label=0x1234567890abcdef1234567890abcdef", "ct_label=0x8000000000000000/0x8000000000000000",
    "ct_label=0x10000000000000000/0x30000000000000000",
    "tun_id=5", "tun_id=0x5/0xff", "tunnel_id=0xffffffffffffffff", "tun_src=1.2.3.4",
    "tun_dst=10.0.0.0/8", "tun_src=1.2.3.0/255.255.255.0,tun_dst=4.3.2.1",
    "metadata=0x5", "metadata=0x1/0x1", "metadata=18446744073709551615",
    "reg0=5", "reg15=0xffffffff/0xf0", "reg7=0x80000000/0x80000000", "reg1=1,reg2=2,reg3=3",
    "xreg0=5", "xreg7=0x1/0x1", "xreg3=0x123456789/0xffffffffffff", "xxreg0=1",
    "xxreg3=0x10000000000000000000000000000001", "reg0=1,xreg1=2",
    "in_port=1,dl_vlan=10,ip,nw_src=10.0.0.0/8,nw_proto=17,udp,tp_dst=4789",
    "priority=5,tcp,tp_dst=80", "tcp,tp_dst:80", "tcp,tp_dst(80)", "tcp tp_dst=80",
    "in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=1234,tp_dst=80,tcp_flags=+syn-ack,nw_tos=16,"
    "nw_ttl=64,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,dl_vlan=7,dl_vlan_pcp=1,"
    "ct_state=+trk+est,ct_zone=3,ct_mark=1,reg0=9,metadata=0x8",
]

# Lines both refuse.
REFUSED = [
    "foo=1", "TCP", "Tcp,tp_dst=1", "tcp,TP_DST=1", "NXM_OF_IN_PORT=1", "reg16=1", "xreg8=1", "xxreg4=1",
    "in_port=1/1", "in_port=70000", "in_port=-1", "in_port", "in_port=foo", "in_port=1/0xffff",
    "in_port=0x5", "in_port=0xfffe", "in_port=4294967039",
    "dl_src=01:02:03:04:05", "dl_src=01-02-03-04-05-06", "dl_src=aa:bb:cc:dd:ee:ff/0",
    "dl_src=gg:00:00:00:00:00", "dl_dst=00:00:00:00:00:00:00", "dl_type=0x10000", "dl_type=0x800/0xff00",
    "dl_vlan=5/0xfff", "dl_vlan_pcp=3/1", "vlan_tci=0x10000", "ip,nw_src=1.2.3", "ip,nw_src=1.2.3.4/33",
    "ip,nw_src=1.2.3.4/", "ip,nw_src=::1", "ip,nw_dst=1.2.3.4/255.255.0", "tun_src=1.2.3.4/40",
    "ipv6,ipv6_src=fe80::1%eth0", "ipv6,ipv6_src=2001:db8::1/129", "ipv6,ipv6_src=1.2.3.4",
    "ipv6,ipv6_src=2001:db8::/ffff:zz::", "ipv6,ipv6_dst=2001:db8:::1", "ipv6,ipv6_label=0x100000",
    "ip,nw_tos=4/0xfc", "ip,nw_ecn=1/1", "ip,nw_ttl=5/1", "ip,nw_ttl=256", "arp,arp_op=1/1",
    "ct_zone=5/1", "icmp,icmp_type=256", "icmp,icmp_code=1/1", "ip,nw_proto=6/0xf0", "ip,nw_proto=256",
    "ip,nw_frag=maybe", "ip,nw_frag=yes/1", "ip,nw_frag=1",
    "tcp,tcp_flags=+syn+syn", "tcp,tcp_flags=0x1000", "tcp,tcp_flags=+SYN", "tcp,tcp_flags=syn+ack",
    "tcp,tcp_flags=+foo", "tcp,tcp_flags=fin|bogus", "tcp,tcp_flags=0x12/0x1000",
    "ct_state=+trk-trk", "ct_state=0x100", "ct_state=+TRK", "ct_state=trk+new", "ct_state=+trk+new/0xff",
    "ct_label=0x11234567890abcdef1234567890abcdef", "ct_zone=65536", "ct_mark=0x100000000",
    "metadata=0xffffffffffffffffff", "metadata=18446744073709551616", "tun_id=0x10000000000000000",
    "xxreg3=0x100000000000000000000000000000001", "xreg0=0x10000000000000000",
    "tcp,tp_dst=65536", "tcp,tp_dst=08", "tcp,tp_dst=80/", "tcp,tp_dst=/80", "tcp,tp_dst=-1",
    "tcp,tp_dst= 80", "tcp,tp_src=0x10000", "tcp,tp_dst=1e2", "tcp,tp_dst=eighty", "metadata=0x 5",
    # ovs-fields(7): no L4 fields in later fragments (the switch refuses: OFPBMC_BAD_PREREQ)
    "tcp,nw_frag=later,tp_dst=80", "udp,nw_frag=later,tp_src=1", "tcp6,nw_frag=later,tcp_flags=+syn",
]

# Lines ovs-ofctl takes and softdpu refuses on purpose: (match, class, evidence).
# prereq: ovs-ofctl drops a field (evidence None: checked generically, see below);
# strict: ovs-ofctl reads the field as an alias; twice: it keeps the last;
# truncate/syntax: it reads something else: the evidence is in its printed match;
# twice: the evidence is its whole printed match.
STRICTER = [
    ("tp_dst=80", "prereq", None), ("nw_src=1.2.3.4", "prereq", None), ("ip,tp_dst=80", "prereq", None),
    ("ipv6,nw_src=1.2.3.4", "prereq", None), ("ip,ipv6_src=::1", "prereq", None),
    ("nw_tos=4", "prereq", None), ("nw_ttl=5", "prereq", None), ("nw_frag=yes", "prereq", None),
    ("nw_ecn=1", "prereq", None), ("tcp_flags=+syn", "prereq", None), ("ip,tcp_flags=+syn", "prereq", None),
    ("udp,tcp_flags=+syn", "prereq", None), ("icmp_type=3", "prereq", None),
    ("ip,icmp_type=3", "prereq", None), ("arp_op=1", "prereq", None),
    ("arp_sha=00:00:00:00:00:01", "prereq", None), ("ip,arp_tha=00:00:00:00:00:01", "prereq", None),
    ("ipv6_label=1", "prereq", None), ("tcp6,nw_src=1.2.3.4", "prereq", None),
    ("udp,ipv6_dst=::1", "prereq", None), ("arp,nw_tos=4", "prereq", None), ("arp,tp_dst=1", "prereq", None),
    ("dl_type=0x1234,nw_proto=5", "prereq", None), ("nw_proto=6", "prereq", None),
    ("mpls,nw_proto=6", "prereq", None), ("icmpv6_type=1", "prereq", None),
    ("ip,nw_proto=50,tp_dst=1", "prereq", None), ("ipv6,nw_proto=1,icmp_type=3", "prereq", None),
    ("ip,nw_proto=58,icmp_type=3", "prereq", None), ("ipv6,tp_src=1", "prereq", None),
    ("dl_type=0x0800,tp_src=1", "prereq", None), ("rarp,ipv6_src=::1", "prereq", None),
    ("udp,tcp_dst=53", "strict", None), ("tcp,udp_src=1", "strict", None), ("tcp,sctp_dst=1", "strict", None),
    ("tcp,icmp_type=3", "strict", None), ("udp6,icmp_code=1", "strict", None),
    ("icmp,icmpv6_type=3", "strict", None), ("ip,arp_spa=1.2.3.4", "strict", None),
    ("ip,arp_tpa=1.2.3.0/24", "strict", None), ("ip,arp_op=1", "strict", None),
    ("in_port=1,in_port=2", "twice", "in_port=2"), ("tcp,udp", "twice", "udp"), ("tcp,tcp", "twice", "tcp"),
    ("ip,ip", "twice", "ip"), ("ip,dl_type=0x86dd", "twice", "ipv6"), ("tcp,nw_proto=17", "twice", "udp"),
    ("dl_vlan=5,vlan_tci=0", "twice", "vlan_tci=0x0000"),
    ("dl_vlan=0xffff,dl_vlan_pcp=3", "twice", "dl_vlan=0,dl_vlan_pcp=3"),
    ("ct_state=+trk,ct_state=+new", "twice", "ct_state=+new"),
    ("arp,nw_proto=1,arp_op=2", "twice", "arp,arp_op=2"),
    ("ip,nw_src=1.2.3.4,ip_src=5.6.7.8", "twice", "ip,nw_src=5.6.7.8"),
    ("tcp,tp_src=1,tcp_src=2", "twice", "tcp,tp_src=2"),
    ("icmp,icmp_type=3,tp_src=4", "twice", "icmp,icmp_type=4"),
    ("reg0=1,xreg0=2", "twice", "reg0=0,reg1=0x2"), ("tcp,nw_proto=*,tp_dst=80", "twice", "ip"),
    ("dl_vlan=5,vlan_vid=0x1006", "twice", "dl_vlan=6"), ("ip,nw_tos=4,ip_dscp=2", "twice", "ip,nw_tos=8"),
    ("vlan_tci=0x1005/0x1fff,vlan_tci=0", "twice", "vlan_tci=0x0000"),
    ("tcp,tp_dst=*,tp_dst=1", "twice", "tcp,tp_dst=1"),
    ("ip,nw_tos=5", "truncate", "nw_tos=4"), ("ip,nw_ecn=4", "truncate", "nw_ecn=0"),
    ("ip,ip_dscp=64", "truncate", "nw_tos=0"), ("dl_vlan=4096", "truncate", "dl_vlan=0"),
    ("dl_vlan=0x1005", "truncate", "dl_vlan=5"), ("dl_vlan_pcp=8", "truncate", "dl_vlan_pcp=0"),
    ("vlan_pcp=9", "truncate", "dl_vlan_pcp=1"), ("arp,arp_op=256", "truncate", "arp_op=0"),
    ("vlan_vid=0x2005", "truncate", "vlan_tci=0x0005/0x1fff"),
    ("ip,nw_src=1.2.3.256", "truncate", "nw_src=1.2.3.0"),
    ("ip,nw_src=1.2.3.4/255.255.255.256", "truncate", "nw_src=1.2.3.0/24"),
    ("icmp,tp_src=5407", "truncate", "icmp_type=31"), ("icmp6,tp_src=0xb6e8/0xffc0", "truncate", "icmp_type=192"),
    ("tcp,tp_dst=0x", "syntax", "tp_dst=0"), ("tcp,tp_dst=+80", "syntax", "tp_dst=80"),
    ("tcp,tp_dst=010", "syntax", "tp_dst=8"), ("ip,nw_ttl=0100", "syntax", "nw_ttl=64"),
    ("ct_mark=010", "syntax", "ct_mark=0x8"), ("tcp,tp_dst", "syntax", "tcp"), ("tcp,tp_dst=", "syntax", "tcp"),
    ("tcp,tcp_flags=0x2/0x2junk", "syntax", "tcp_flags=+syn"), ("dl_src=0x1:2:3:4:5:6", "syntax", "dl_src=01"),
    ("dl_src=001:2:3:4:5:6", "syntax", "dl_src=01"),
]



# -- seeded random lines ---------------------------------------------------------------

PROTOCOLS = ["", "ip", "ipv6", "arp", "rarp", "tcp", "udp", "sctp", "icmp", "tcp6", "udp6", "sctp6",
             "icmp6", "dl_type=0x0800", "dl_type=0x86dd", "dl_type=0x88cc", "mpls",
             "dl_type=0x0800,nw_proto=6", "ip,nw_proto=47", "ipv6,nw_proto=58", "ip,nw_proto=132"]


def _rand_int(rng, bits, maskable=True):
    v = rng.getrandbits(bits)
    r = rng.random()
    if not maskable or r < 0.4:
        return str(v) if r < 0.2 else hex(v)
    if r < 0.7:                                   # a prefix-like mask
        n = rng.randint(0, bits)
        return f"{v:#x}/{((1 << bits) - 1) ^ ((1 << (bits - n)) - 1):#x}"
    return f"{v:#x}/{rng.getrandbits(bits):#x}"


def _rand_mac(rng):
    mac = ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6))
    r = rng.random()
    if r < 0.5:
        return mac
    if r < 0.75:
        return mac + "/" + rng.choice(["ff:ff:ff:00:00:00", "01:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"])
    return mac + "/" + ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6))


def _rand_ipv4(rng):
    a = ".".join(str(rng.getrandbits(8)) for _ in range(4))
    r = rng.random()
    if r < 0.4:
        return a
    if r < 0.8:
        return f"{a}/{rng.randint(0, 32)}"
    return a + "/" + ".".join(str(rng.getrandbits(8)) for _ in range(4))


def _rand_ipv6(rng):
    a = str(ipaddress.IPv6Address(rng.getrandbits(128) >> rng.choice([0, 0, 64, 100])))
    r = rng.random()
    if r < 0.4:
        return a
    if r < 0.8:
        return f"{a}/{rng.randint(0, 128)}"
    return a + "/" + str(ipaddress.IPv6Address(rng.getrandbits(128)))


def _rand_flags(rng, names, bits):
    r = rng.random()
    picked = rng.sample(names, rng.randint(1, 4))
    if r < 0.5:
        return "".join(rng.choice("+-") + n for n in picked)
    if r < 0.7:
        return "|".join(picked)
    return _rand_int(rng, bits)


# member -> value makers (one keyword per member on a line, so no line is refused as "twice")
RANDOM_FIELDS = {
    "in_port": lambda r: f"in_port={r.choice([r.randint(1, 65279), 'LOCAL'])}",
    "dl_src": lambda r: f"dl_src={_rand_mac(r)}",
    "dl_dst": lambda r: f"dl_dst={_rand_mac(r)}",
    "vlan": lambda r: r.choice([f"dl_vlan={r.randint(0, 4095)}", "dl_vlan=0xffff",
                                f"dl_vlan_pcp={r.randint(0, 7)}",
                                f"dl_vlan={r.randint(0, 4095)},dl_vlan_pcp={r.randint(0, 7)}",
                                f"vlan_tci={_rand_int(r, 16)}"]),
    "nw_src": lambda r: f"{r.choice(['nw_src', 'nw_src', 'arp_spa'])}={_rand_ipv4(r)}",
    "nw_dst": lambda r: f"{r.choice(['nw_dst', 'nw_dst', 'arp_tpa'])}={_rand_ipv4(r)}",
    "ipv6_src": lambda r: f"ipv6_src={_rand_ipv6(r)}",
    "ipv6_dst": lambda r: f"ipv6_dst={_rand_ipv6(r)}",
    "ipv6_label": lambda r: f"ipv6_label={r.getrandbits(20):#x}" + r.choice(["", f"/{r.getrandbits(20):#x}"]),
    "arp_op": lambda r: f"arp_op={r.randint(0, 4)}",
    "arp_sha": lambda r: f"arp_sha={_rand_mac(r)}",
    "arp_tha": lambda r: f"arp_tha={_rand_mac(r)}",
    "tos": lambda r: r.choice([f"nw_tos={r.randint(0, 63) * 4}", f"nw_ecn={r.randint(0, 3)}",
                               f"nw_tos={r.randint(0, 63) * 4},nw_ecn={r.randint(0, 3)}"]),
    "nw_ttl": lambda r: f"nw_ttl={r.randint(0, 255)}",
    "nw_frag": lambda r: f"nw_frag={r.choice(['yes', 'no', 'first', 'later', 'not_later'])}",
    "tp_src": lambda r: r.choice([f"tp_src={_rand_int(r, 16)}", f"icmp_type={r.randint(0, 255)}"]),
    "tp_dst": lambda r: r.choice([f"tp_dst={_rand_int(r, 16)}", f"icmp_code={r.randint(0, 255)}"]),
    "tcp_flags": lambda r: f"tcp_flags={_rand_flags(r, TCP_FLAG_NAMES, 12)}",
    "ct_state": lambda r: f"ct_state={_rand_flags(r, CT_FLAG_NAMES, 8)}",
    "ct_zone": lambda r: f"ct_zone={r.getrandbits(16)}",
    "ct_mark": lambda r: f"ct_mark={_rand_int(r, 32)}",
    "ct_label": lambda r: f"ct_label={_rand_int(r, 128)}",
    "tun_id": lambda r: f"tun_id={_rand_int(r, 64)}",
    "tun_src": lambda r: f"tun_src={_rand_ipv4(r)}",
    "tun_dst": lambda r: f"tun_dst={_rand_ipv4(r)}",
    "metadata": lambda r: f"metadata={_rand_int(r, 64)}",
    "reg": lambda r: f"reg{r.randint(0, 15)}={_rand_int(r, 32)}",
    "xreg": lambda r: f"xreg{r.randint(0, 7)}={_rand_int(r, 64)}",
}
# a name ovs-fields(7) ties to one protocol while ovs-ofctl takes it as an alias
STRICT_NAMES = {"arp_spa", "arp_tpa", "arp_op", "icmp_type", "icmp_code"}


def random_lines(seed=20240601, n=160):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        picked = rng.sample(sorted(RANDOM_FIELDS), rng.randint(1, 5))
        if "reg" in picked and "xreg" in picked:
            picked.remove("xreg")
        proto = rng.choice(PROTOCOLS)
        if "arp_op" in picked and (proto[-1:].isdigit() and "0x" not in proto[-6:]
                                   or proto.rstrip("6") in ("tcp", "udp", "sctp", "icmp")):
            picked.remove("arp_op")     # arp_op is OVS's nw_proto: it would clash
        parts = [RANDOM_FIELDS[k](rng) for k in picked]
        if proto:
            parts.insert(rng.randint(0, len(parts)), proto)
        lines.append(",".join(parts))
    return lines
