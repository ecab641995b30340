"""Readers shared by every task family: JSON Lines / JSON arrays, delimited tables, captured requests.

Each reader reports a problem with the file and line it is on: a format that promises to skip bad lines
(prediction inputs, capture) returns them as :class:`BadLine` records; a training set raises
:class:`BadInput`, a :class:`~sagelab.config.ConfigError` naming the file and line.
"""

from sagelab.readers.jsonl import read_json_records
from sagelab.readers.lines import BadInput, BadLine

__all__ = ["BadInput", "BadLine", "read_json_records"]
