"""The .dcz container: see docs/format.md."""

from ..errors import FormatError
from .dcz import DczFile, RecordInfo, SharedTensor, decode_dcz, encode_dcz, read_dcz, replace_extras, write_dcz

__all__ = ["DczFile", "FormatError", "RecordInfo", "SharedTensor", "decode_dcz", "encode_dcz", "read_dcz",
           "replace_extras", "write_dcz"]
