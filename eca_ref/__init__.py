"""eca-ref: the reference implementation of ECA-Net in plain NumPy."""
__version__ = "0.1.0"
