"""The ESP stages of a Dpu: "esp-in" after parse, "esp-out" after the tunnel encapsulation.

Each is one or two kernel calls per batch around one call of the crypto
backend: libcrypto from numba when it loads (libcrypto.py), else the
`cryptography` package (reference.py).  backend="reference" forces the
latter (tests compare the two).
"""
import numpy as np

from softdpu import drops
from softdpu.stages.esp import libcrypto
from softdpu.stages.esp.decrypt import esp_in_finish, esp_in_prepare
from softdpu.stages.esp.encrypt import esp_out
from softdpu.stages.esp.jobs import Jobs
from softdpu.stages.esp.reference import Reference
from softdpu.stages.esp.sa_table import C_BYTES, C_DROPS, C_PACKETS, SaTable


class Esp:
    """Owns the SA table, the windows, the cipher contexts and the job scratch of one Dpu."""

    def __init__(self, esp_cfg, ports, rows, max_frame, backend=None):
        self.table = SaTable(esp_cfg)
        self.jobs = Jobs(rows)
        self.refs = np.zeros((rows, 2), np.int64)
        self.clones = np.zeros(1, np.int64)
        self.state = np.zeros(2, np.int64)
        self.port_mtu = np.zeros(65536, np.int64)
        for p in ports:          # IP packets leaving a port: its mtu, else what max_frame allows
            self.port_mtu[p.ofport] = p.options.get("mtu", max_frame - 14)
        if backend is None:
            backend = "libcrypto" if libcrypto.AVAILABLE else "reference"
        if backend not in ("libcrypto", "reference"):
            raise ValueError(f"unknown ESP crypto backend {backend!r}")
        if backend == "libcrypto" and not libcrypto.AVAILABLE:
            raise RuntimeError("libcrypto could not be loaded")
        self.backend = backend
        sas = self.table.sas
        self.crypto = libcrypto.Contexts(sas) if backend == "libcrypto" else Reference(sas)

    def inbound(self, batch, drop_malformed):
        t, j = self.table, self.jobs
        j.n = esp_in_prepare(batch.data, batch.meta, batch.n, t.sa, t.seqs, t.bitmap, t.spi_hash, t.addrs,
                             t.n_addrs, t.pol, t.n_pol, t.n_in_pol, j.jobs, j.nonce, j.aad, t.counters)
        if j.n:
            self.crypto.run(j.jobs, j.n, batch.data, j.nonce, j.aad)
            esp_in_finish(batch.data, batch.meta, batch.key, j.jobs, j.n, t.sa, t.seqs, t.bitmap, t.pol,
                          t.n_pol, drop_malformed, t.counters)

    def outbound(self, batch, clones_used):
        """Protect the tx entries policies select; clone rows from batch.size + clones_used on
        are free.  -> clone rows used in all."""
        t, j = self.table, self.jobs
        if batch.data.shape[0] > self.refs.shape[0]:      # the kernels index scratch by row
            raise ValueError(f"a batch of {batch.data.shape[0]} rows; this ESP stage was sized for "
                             f"{self.refs.shape[0]}")
        self.clones[0] = clones_used
        esp_out(batch.data, batch.meta, batch.tx, batch.n_tx, batch.n, batch.size, self.clones, t.sa, t.seqs,
                t.pol, t.n_pol, self.port_mtu, self.refs, j.jobs, j.nonce, j.aad, t.counters, self.state)
        batch.n_tx = int(self.state[0])
        j.n = int(self.state[1])
        if j.n:
            self.crypto.run(j.jobs, j.n, batch.data, j.nonce, j.aad)
        return int(self.clones[0])

    def counts(self, name):
        """{"packets", "bytes", drop reason: count} of the SA called name (tests, reports)."""
        k = next(k for k, s in enumerate(self.table.sas) if s.name == name)
        return self._counts(self.table.counters[k])

    @staticmethod
    def _counts(row):
        out = {"packets": int(row[C_PACKETS]), "bytes": int(row[C_BYTES])}
        out.update({drops.NAMES[c]: int(v) for c, v in enumerate(row[C_DROPS:]) if v})
        return out

    def unknown_spi(self):
        return int(self.table.counters[-1, C_DROPS + drops.ESP_UNKNOWN_SPI])

    def lines(self):
        """Per SA: what it carried and dropped, for the run summary."""
        out = []
        for k, s in enumerate(self.table.sas):
            c = self._counts(self.table.counters[k])
            extra = "".join(f", {name} {v}" for name, v in c.items() if name not in ("packets", "bytes"))
            verb = "encrypted" if s.direction == "out" else "decrypted"
            out.append(f"esp sa {s.name} ({s.direction}, spi {s.spi:#x}, {s.mode}, {s.aead}): {verb} "
                       f"{c['packets']} packets {c['bytes']} bytes{extra}")
        if self.unknown_spi():
            out.append(f"esp: {self.unknown_spi()} packets with an unknown SPI")
        return out
