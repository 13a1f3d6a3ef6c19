"""softdpu: a software DPU data plane in Python, with numba kernels over packet batches."""
__version__ = "0.1.0"
