"""Value parsers for flow match fields and action arguments, as ovs-ofctl reads them.

Each parser takes the text after `field=` and returns (value, mask) as Python
ints (the value already ANDed with the mask, as ovs-ofctl shows it), the mask
covering the whole width when none is given, or raises ValueError with what
was expected.  Accepted forms:

  integers   42, 0x2a, 42/0xff (value/mask)
  ports      7 (decimal only, as ovs-ofctl), or a reserved port name (LOCAL, CONTROLLER, ...)
  MACs       aa:bb:cc:dd:ee:ff, with an optional /mask MAC
  IPv4       10.0.0.1, 10.0.0.0/8, 10.0.0.0/255.0.0.0
  IPv6       2001:db8::1, 2001:db8::/32, 2001:db8::/ffff:ffff::
  flags      +syn-ack (each flag set or clear), syn|ack (exactly these), 0x12/0x12
  nw_frag    no, yes, first, later, not_later

Stricter than ovs-ofctl where it would silently read something else:
integers with a leading 0 (C's strtoull reads 010 as octal 8), a sign,
'0x' with no digits, IPv4 parts above 255 (ovs-ofctl wraps 1.2.3.256 to
1.2.3.0) and text after a numeric flags value are errors, not guesses.
"""
import ipaddress
import re

_INT = re.compile(r"0[xX][0-9a-fA-F]+|0|[1-9][0-9]*")
_HEX12 = re.compile(r"[0-9a-fA-F]{1,2}")
_DEC = re.compile(r"[0-9]+")
_IPV4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")
_IPV6_CHARS = re.compile(r"[0-9a-fA-F:.]+")


def number(text, bits):
    """One unsigned integer of at most `bits` bits: decimal or 0x hex."""
    if not _INT.fullmatch(text):  # not int(text, 0): that takes 0o7, 0b1, 1_000, +1
        if re.fullmatch(r"0[0-7]+", text):
            raise ValueError(f"expected an integer (decimal or 0x hex), got '{text}' "
                             "(Open vSwitch reads a leading 0 as octal: write it in decimal or 0x hex)")
        raise ValueError(f"expected an integer (decimal or 0x hex), got '{text}'")
    v = int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10)
    if v >= (1 << bits):
        raise ValueError(f"expected a value that fits in {bits} bits, got '{text}'")
    if v >> 64 and text[:2] not in ("0x", "0X"):   # ovs-ofctl reads decimals with strtoull
        raise ValueError(f"expected a decimal that fits in 64 bits (write wider values in 0x hex), "
                         f"got '{text}'")
    return v


def integer(text, bits):
    """An unsigned integer field of `bits` bits, optionally value/mask."""
    value_text, sep, mask_text = text.partition("/")
    value = number(value_text, bits)
    mask = number(mask_text, bits) if sep else (1 << bits) - 1
    return value & mask, mask


# OpenFlow 1.0 reserved port numbers, by the names ovs-ofctl accepts (any case).
PORT_NAMES = {
    "UNSET": 0xFFF7, "IN_PORT": 0xFFF8, "TABLE": 0xFFF9, "NORMAL": 0xFFFA, "FLOOD": 0xFFFB,
    "ALL": 0xFFFC, "CONTROLLER": 0xFFFD, "LOCAL": 0xFFFE, "ANY": 0xFFFF, "NONE": 0xFFFF,
}


def port(text):
    """An OpenFlow port for in_port, as ovs-ofctl reads it (ofputil_port_from_string):
    a decimal number (leading zeros too; no hex), or a reserved port name in any case.
    OpenFlow 1.1 numbers 0xffffff00.. map to the 1.0 reserved ports."""
    if text.upper() in PORT_NAMES:
        return PORT_NAMES[text.upper()]
    if not _DEC.fullmatch(text):
        raise ValueError("expected a port number (decimal) or a reserved port name ("
                         + ", ".join(PORT_NAMES) + f"), got '{text}'")
    v = int(text, 10)
    if 0xFFFFFF00 <= v <= 0xFFFFFFFF:
        return v - 0xFFFF0000
    if v > 0xFFFF:
        raise ValueError(f"expected a port number 0..65535, got '{text}'")
    return v


def mac(text):
    """A 48-bit Ethernet address, optionally with a /mask address."""
    value_text, sep, mask_text = text.partition("/")
    value = _mac(value_text)
    mask = _mac(mask_text) if sep else (1 << 48) - 1
    return value & mask, mask


def _mac(text):
    parts = text.split(":")
    if len(parts) != 6 or not all(_HEX12.fullmatch(p) for p in parts):  # not int(): it takes '_' and '+'
        raise ValueError(f"expected an Ethernet address like 00:11:22:33:44:55, got '{text}'")
    return int("".join(p.zfill(2) for p in parts), 16)


def _ipv4(text, what="an IPv4 address like 10.0.0.1"):
    m = _IPV4.fullmatch(text)
    if not m or any(int(p) > 255 for p in m.groups()):
        raise ValueError(f"expected {what}, got '{text}'")
    a, b, c, d = (int(p) for p in m.groups())   # decimal, leading zeros too, as ovs-ofctl
    return a << 24 | b << 16 | c << 8 | d


def _prefix(text, bits):
    if not _DEC.fullmatch(text) or int(text) > bits:
        raise ValueError(f"expected a prefix length 0..{bits}, got '{text}'")
    n = int(text)
    return ((1 << bits) - 1) ^ ((1 << (bits - n)) - 1)


def ipv4(text):
    """An IPv4 address with an optional /prefix or /dotted-mask."""
    value_text, sep, mask_text = text.partition("/")
    value = _ipv4(value_text)
    if not sep:
        return value, 0xFFFFFFFF
    if _DEC.fullmatch(mask_text):
        mask = _prefix(mask_text, 32)
    else:
        mask = _ipv4(mask_text, "a prefix length 0..32 or a dotted mask like 255.255.0.0")
    return value & mask, mask


def _ipv6(text, what="an IPv6 address like 2001:db8::1"):
    if not _IPV6_CHARS.fullmatch(text):   # no zone ids ('%eth0'): inet_pton refuses them
        raise ValueError(f"expected {what}, got '{text}'")
    try:
        return int(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError(f"expected {what}, got '{text}'") from None


def ipv6(text):
    """A 128-bit IPv6 address with an optional /prefix or /mask address."""
    value_text, sep, mask_text = text.partition("/")
    value = _ipv6(value_text)
    full = (1 << 128) - 1
    if not sep:
        return value, full
    if _DEC.fullmatch(mask_text):
        mask = _prefix(mask_text, 128)
    elif mask_text[:1].isdigit():   # ovs-ofctl reads the leading digits as a prefix length
        raise ValueError(f"expected a prefix length 0..128 or an IPv6 mask that starts with a hex "
                         f"letter or '::' (ovs-ofctl cannot read '{mask_text}'), got '{mask_text}'")
    else:
        mask = _ipv6(mask_text, "a prefix length 0..128 or an IPv6 mask like ffff:ffff::")
    return value & mask, mask


# nw_frag names -> (value, mask) over OVS's FLOW_NW_FRAG_ANY (1) and _LATER (2) bits
FRAG = {"no": (0, 3), "first": (1, 3), "later": (3, 3), "yes": (1, 1), "not_later": (0, 2)}


def frag(text):
    """An nw_frag name (any case, as ovs-ofctl)."""
    try:
        return FRAG[text.lower()]
    except KeyError:
        raise ValueError(f"expected one of no, yes, first, later, not_later, got '{text}'") from None


def flags(text, names, bits, what):
    """Flags (tcp_flags, ct_state): '+a-b' (each listed flag set or clear, the rest
    wildcarded), 'a|b' (exactly these set), or numbers: N (exact) or N/M.

    `names` maps each flag name to its bit; `bits` is how wide the field is."""
    allowed = (1 << bits) - 1
    if text[:1] in ("+", "-"):
        value = mask = 0
        for sign, name in re.findall(r"([+-])([^+-]*)", text):
            if name not in names:
                raise ValueError(f"unknown {what} flag '{name}'; expected "
                                 + ", ".join(names) + " after '+' or '-'")
            bit = names[name]
            if mask & bit:
                raise ValueError(f"{what} flag '{name}' given twice")
            mask |= bit
            value |= bit if sign == "+" else 0
        return value, mask
    if "/" in text:
        value_text, _, mask_text = text.partition("/")
        value, mask = _flag_number(value_text, bits, what), _flag_number(mask_text, bits, what)
        return value & mask, mask
    value = 0
    for part in text.split("|"):
        value |= names[part] if part in names else _flag_number(part, bits, what, names)
    return value, allowed


def _flag_number(text, bits, what, names=None):
    try:
        return number(text, bits)
    except ValueError:
        hint = (", flags like " + "|".join(list(names)[:2])) if names else ""
        raise ValueError(f"expected {what} as +flag-flag{hint}, or a number that fits in {bits} bits "
                         f"(decimal or 0x hex, optionally /mask), got '{text}'") from None
