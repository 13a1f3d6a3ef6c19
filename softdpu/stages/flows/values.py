"""Value parsers for flow match fields and action arguments, as ovs-ofctl reads them.

Each parser takes the text after `field=` and returns (value, mask) as Python
ints, the mask covering the field's full width when none is given, or raises
ValueError with what was expected.  Accepted forms:

  integers   42, 0x2a, 42/0xff (value/mask)
  MACs       aa:bb:cc:dd:ee:ff, with an optional /mask MAC
  IPv4       10.0.0.1, 10.0.0.0/8, 10.0.0.0/255.0.0.0
"""
import ipaddress
import re

_INT = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
_HEX12 = re.compile(r"[0-9a-fA-F]{1,2}")


def integer(text, bits):
    """An unsigned integer field of `bits` bits, optionally value/mask."""
    full = (1 << bits) - 1
    value_text, sep, mask_text = text.partition("/")
    value = _int(value_text, bits)
    mask = _int(mask_text, bits) if sep else full
    return value & mask, mask


def _int(text, bits):
    if not _INT.fullmatch(text):  # not int(text, 0): that takes 0o7, 0b1, 1_000, +1
        raise ValueError(f"expected an integer (decimal or 0x hex), got '{text}'")
    v = int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10)
    if not 0 <= v < (1 << bits):
        raise ValueError(f"expected a value that fits in {bits} bits, got '{text}'")
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


def ipv4(text):
    """An IPv4 address with an optional /prefix or /dotted-mask."""
    value_text, sep, mask_text = text.partition("/")
    try:
        value = int(ipaddress.IPv4Address(value_text))
    except ValueError:
        raise ValueError(f"expected an IPv4 address, got '{value_text}'") from None
    if not sep:
        return value, 0xFFFFFFFF
    if mask_text.isdigit():
        prefix = int(mask_text)
        if prefix > 32:
            raise ValueError(f"expected a prefix length 0..32, got '{mask_text}'")
        mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    else:
        try:
            mask = int(ipaddress.IPv4Address(mask_text))
        except ValueError:
            raise ValueError(f"expected a prefix length or a dotted mask, got '{mask_text}'") from None
    return value & mask, mask
