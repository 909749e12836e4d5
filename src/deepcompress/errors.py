"""Exceptions raised for bad input; all are ``ValueError`` subclasses with messages naming the problem."""


class FormatError(ValueError):
    """A .dcz file (or part of one) is malformed, truncated or corrupted."""


class CodingError(FormatError):
    """An entropy-coded or index-coded stream cannot be decoded (or encoded) as asked."""
