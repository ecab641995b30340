"""``mode=predict`` / ``mode=batch_transform`` for any task family: records in, one JSON answer a line out,
in input order.

The task's :class:`~sagelab.inference.Handler` says how to read one record and how to answer a batch of them;
this loop owns the rest: reading JSON Lines, a JSON array or a ``.tsv``/``.csv`` whose header names the
fields a record needs (each row is then a record of strings), counting and listing skipped records (file,
line, reason), batching by ``optim.eval_batch_size``, writing ``predict.output`` and logging it. An input
where every record is skipped is a configuration error (exit 2), not an empty success.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sagelab.config import ConfigError, check_file
from sagelab.inference import Handler, Parse, output_line
from sagelab.readers import BadLine, read_json_records
from sagelab.readers.lines import print_skipped
from sagelab.readers.tables import TABLE_SUFFIXES, read_rows

if TYPE_CHECKING:
    from sagelab.context import TaskContext

def read_predict_input(path: Path, parse: Parse) -> tuple[list[dict[str, Any]], list[BadLine]]:
    bad: list[BadLine] = []
    records = []
    if path.suffix.lower() in TABLE_SUFFIXES:
        values = read_rows(path, bad, lenient=True)[1]
    else:
        values = read_json_records(path, bad)
    for line, value in values:
        record = parse(value, line)
        if isinstance(record, str):
            bad.append(BadLine(str(path), line, record))
        else:
            records.append(record)
    return records, sorted(bad, key=lambda b: b.line)


def run_transform(context: TaskContext, handler: Handler, artifact_dir: str | None = None) -> dict[str, Any]:
    import torch

    cfg = context.cfg
    path = check_file("predict.input", str(cfg.predict.input or ""), "input file")
    records, bad = read_predict_input(path, handler.parse)
    print_skipped(bad)
    if not records:
        raise ConfigError("predict.input", f"'{path}' has no usable record ({len(bad)} skipped"
                          f"{': ' + bad[0].reason if bad else ', the file is empty'}).")
    module = context.load_module().eval()
    out_path = Path(str(cfg.predict.output))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    step = int(cfg.optim.eval_batch_size)
    with open(out_path, "w", encoding="utf-8") as out, torch.no_grad():
        for start in range(0, len(records), step):
            batch = records[start : start + step]
            for record, result in zip(batch, handler.answer(module, batch)):
                out.write(output_line(record, result) + "\n")
    print(f"wrote {len(records)} predictions to {out_path}; skipped {len(bad)} record(s)")
    context.tracker.log_artifact(out_path, artifact_dir)
    return {"predict/records": len(records), "predict/skipped": len(bad)}
