"""deepcompress: Deep Compression (Han, Mao & Dally, ICLR 2016) for PyTorch."""

__version__ = "0.1.0"
