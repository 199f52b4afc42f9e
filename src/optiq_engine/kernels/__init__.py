"""Numba kernels: integer-encoded, pre-sorted numpy arrays in, numpy arrays out."""
