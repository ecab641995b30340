"""Readers shared by every task family: JSON Lines / JSON arrays, delimited tables, captured requests.

Each reader reports a problem with the file and line it is on: a format that promises to skip bad lines
(prediction inputs, capture) returns them as :class:`BadLine` records; a training set raises
:class:`~sagelab.config.ConfigError` naming the file and line.
"""

from sagelab.readers.jsonl import BadLine, read_json_records

__all__ = ["BadLine", "read_json_records"]
