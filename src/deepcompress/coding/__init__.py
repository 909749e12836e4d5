"""Entropy coding (canonical Huffman) and relative sparse-index coding."""
