"""The reference AEAD backend: the `cryptography` package, one Python call per packet.

It runs the same job list (jobs.py) as the libcrypto kernel and must give the
same bytes (tests/test_esp_crypto.py checks); the ESP stage uses it only when
libcrypto cannot be loaded.  It copies each packet's text out of the batch
and the result back, so it is several times slower: not for the fast path.
"""
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from softdpu.stages.esp.jobs import J_AAD_LEN, J_OK, J_ROW, J_SA, J_TEXT, J_TEXT_LEN, NONCE_LEN, TAG_LEN


def aead(name, key):
    """The `cryptography` AEAD object of an SA's cipher and key."""
    return ChaCha20Poly1305(key) if name == "chacha20-poly1305" else AESGCM(key)


class Reference:
    """Per SA: its AEAD object; `run` does a job list."""

    def __init__(self, sas):
        self.aeads = [aead(sa.aead, sa.key) for sa in sas]

    def run(self, jobs, n_jobs, data, nonce, aad):
        for j in range(n_jobs):
            row, sa, off, n = (int(v) for v in jobs[j, [J_ROW, J_SA, J_TEXT, J_TEXT_LEN]])
            a = self.aeads[sa]
            iv = bytes(nonce[j, :NONCE_LEN])
            ad = bytes(aad[j, : jobs[j, J_AAD_LEN]])
            if jobs[j, J_OK] < 0:
                try:
                    plain = a.decrypt(iv, bytes(data[row, off: off + n + TAG_LEN]), ad)
                except InvalidTag:
                    jobs[j, J_OK] = 0
                    continue
                data[row, off: off + n] = np.frombuffer(plain, np.uint8)
            else:
                sealed = a.encrypt(iv, bytes(data[row, off: off + n]), ad)
                data[row, off: off + n + TAG_LEN] = np.frombuffer(sealed, np.uint8)
            jobs[j, J_OK] = 1
