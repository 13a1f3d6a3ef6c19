"""The AEAD job list: what the ESP kernels hand to a crypto backend, one row per packet.

The outbound and inbound kernels do everything but the cipher: they find the
SA, write or check the headers, and append a job; a backend (libcrypto.py
from numba, or reference.py through `cryptography`) then encrypts or
decrypts each job's bytes in place in the batch; a finishing kernel reads
the verdicts.  Splitting here keeps the two backends interchangeable, byte
for byte, and testable against each other.

    jobs   int64[rows, J_COLS]   J_ROW     batch row
                                 J_SA      SA index (its cipher context)
                                 J_TEXT    slot offset of the plaintext / ciphertext
                                 J_TEXT_LEN  its length; the 16-byte ICV follows it
                                 J_AAD_LEN 8, or 12 with ESN (RFC 4106 5)
                                 J_OK      in: -1 decrypt, 0 encrypt; out: 1 good, 0 not
                                 J_SEQ     the 64-bit sequence number (inbound: for the
                                           replay window update after a good ICV)
                                 J_ESP     slot offset of the ESP header
    nonce  uint8[rows, 16]       salt (4) | IV (8), RFC 4106 4 / RFC 7634 2
    aad    uint8[rows, 16]       SPI | [seq high] | seq low
"""
import numpy as np

J_ROW, J_SA, J_TEXT, J_TEXT_LEN, J_AAD_LEN, J_OK, J_SEQ, J_ESP = range(8)
J_COLS = 8
TAG_LEN = 16          # the ICV: 16 bytes for all three AEADs here (RFC 4106 / 7634)
IV_LEN = 8
NONCE_LEN = 12


class Jobs:
    """The job arrays for a batch of `rows` rows (allocated once)."""

    def __init__(self, rows):
        self.jobs = np.zeros((rows, J_COLS), np.int64)
        self.nonce = np.zeros((rows, 16), np.uint8)
        self.aad = np.zeros((rows, 16), np.uint8)
        self.n = 0
