"""``mode=batch_transform`` (SageMaker's batch transform job) and ``mode=predict``, its small-input name, for any
task family: records in, one JSON answer a line out, in input order.

The task's :class:`~sagelab.inference.Handler` says how to read one record, how to answer a batch and how long
a record is; this package owns the rest:

* :mod:`.sources` -- a file or a folder of JSON Lines, CSV/TSV with a header, plain text (one text a line) or a
  JSON array, read as a stream of items (a value or a bad line, with file and line);
* windows of ``predict.window`` items: the window's records answered longest first in batches of
  ``optim.eval_batch_size`` (:mod:`.answering`), in this process or spread over ``instances.processes(cfg)``
  worker processes, and written back in input order;
* :mod:`.journal` -- each window committed (answers and skipped lines fsynced, then a state file written
  atomically), so a killed run (SIGKILL or SIGTERM) re-run with the same command resumes without duplicating
  or losing a line.

Skipped lines are counted, the first 20 printed, all of them written to ``<output>.skipped.jsonl`` and logged
to MLflow. An input in which every record is skipped is a configuration error (exit 2), not an empty success.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from sagelab.config import ConfigError, check_file
from sagelab.inference import Handler, Parse
from sagelab.readers import BadLine
from sagelab.readers.lines import print_skipped
from sagelab.transform.sources import Item, identity, input_files, read_items

if TYPE_CHECKING:
    from sagelab.context import TaskContext
    from sagelab.tasks.base import Task

SHOW_SKIPPED = 20  # skipped lines printed; the rest are counted (all are in the skipped list)


@dataclass
class Window:
    """A run of consecutive input items: the records to answer and the lines skipped among them."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    consumed: int = 0
    answered: int = 0  # records, kept once the records themselves are handed to the model


def parsed(items: Iterable[Item], parse: Parse) -> Iterator[tuple[Item, dict[str, Any] | str]]:
    """Each item with its record, or why it is skipped."""
    for item in items:
        yield item, item.bad if item.bad is not None else parse(item.value, item.line)


def windows(items: Iterable[Item], parse: Parse, size: int) -> Iterator[Window]:
    """Consecutive windows of at most ``size`` items (good or bad, so a run of bad lines is bounded too)."""
    window = Window()
    for item, record in parsed(items, parse):
        window.consumed += 1
        if isinstance(record, str):
            window.bad.append(BadLine(item.file, item.line, record))
        else:
            window.records.append(record)
        if window.consumed >= size:
            yield window
            window = Window()
    if window.consumed:
        yield window


def read_predict_input(path: Path, parse: Parse) -> tuple[list[dict[str, Any]], list[BadLine]]:
    """All records of a small input and its skipped lines (sorted by line), read whole."""
    files, other = input_files(Path(path))
    records, bad = [], []
    for item, record in parsed(read_items(files, other), parse):
        if isinstance(record, str):
            bad.append(BadLine(item.file, item.line, record))
        else:
            records.append(record)
    return records, sorted(bad, key=lambda b: (b.file, b.line))


def run_transform(context: TaskContext, handler: Handler, artifact_dir: str | None = None,
                  task: Task | None = None) -> dict[str, Any]:
    """Answer ``predict.input`` into ``predict.output``, resuming an interrupted run of the same command.

    ``task`` lets worker processes build the handler and module themselves (several processes); without it the
    transform runs in this process.
    """
    from sagelab import faults, hardware, instances
    from sagelab.transform import journal
    from sagelab.transform.answering import Answerer

    cfg = context.cfg
    source = check_file("predict.input", str(cfg.predict.input or ""), "input file")
    output = Path(str(cfg.predict.output))
    files, other = input_files(source)
    refuse_output_inside(source, output)
    key = {"input": identity(files), "task": str(cfg.task.name), "checkpoint": str(cfg.checkpoint.get("load"))}
    progress, note = journal.start(output, key, bool(cfg.predict.resume))
    journal.say(note)
    processes = instances.processes(cfg) if task is not None else 1
    threads = int(hardware.resolve_threads(cfg.instance.threads, processes).value)
    answerer = Answerer(handler, context.load_module, int(cfg.optim.eval_batch_size), processes, task, threads,
                        context.precision)
    book = journal.Journal(output, progress)
    hooks = commit_hooks(cfg)
    started, resumed_at, failed = time.monotonic(), progress.consumed, True
    bar = _bar(progress.consumed)
    try:
        items = islice(read_items(files, other), progress.consumed, None)
        for window, lines in answered(windows(items, handler.parse, int(cfg.predict.window)), answerer):
            with faults.current().deferred():  # a SIGTERM lands after the commit, never inside it
                book.commit(lines, window.answered, window.bad, window.consumed)
            bar.update(window.consumed)
            for hook in hooks:
                hook(book.progress)
        book.finish()
        failed = False
    except faults.Terminated:
        journal.say(f"batch transform stopped; {progress.consumed} input line(s) committed to {output}: re-run "
                    "the same command to resume")
        raise
    finally:
        answerer.close(failed)
        book.close()
        bar.close()
    elapsed = time.monotonic() - started
    report_skipped(book, progress.skipped)
    if not progress.records:
        first = book.first_skipped(1)
        why = f": {first[0].reason}" if first else ", the file is empty" if source.is_file() else ", no input files"
        raise ConfigError("predict.input", f"'{source}' has no usable record ({progress.skipped} skipped{why}).")
    print(f"wrote {progress.records} predictions to {output}; skipped {progress.skipped} record(s)")
    context.tracker.log_artifact(output, artifact_dir)
    if progress.skipped:
        context.tracker.log_artifact(book.skipped_path, artifact_dir)
    return {"predict/records": progress.records, "predict/skipped": progress.skipped,
            "predict/lines_per_s": (progress.consumed - resumed_at) / max(elapsed, 1e-9)}


def answered(windows: Iterable[Window], answerer: Any) -> Iterator[tuple[Window, str]]:
    """Each window with its output lines, in input order; up to ``answerer.ahead`` windows in flight."""
    from sagelab.transform.answering import drain

    pending: deque = deque()
    for window in windows:
        future = answerer.submit(window.records) if window.records else None
        window.answered, window.records = len(window.records), []  # the worker has them now
        pending.append((window, future))
        yield from drain(pending, answerer.ahead)
    yield from drain(pending, 0)


def refuse_output_inside(source: Path, output: Path) -> None:
    """An output inside the input folder would be read as input by the next run."""
    if source.is_dir() and output.resolve().is_relative_to(source.resolve()):
        raise ConfigError("predict.output", f"'{output}' is inside the input folder '{source}'; write it elsewhere.")


def commit_hooks(cfg: Any) -> list[Callable[[Any], None]]:
    """``on_transform_commit(progress)`` of the command's ``callbacks`` that have one (tests stop a run there)."""
    from hydra.utils import instantiate

    found = (instantiate(spec) for spec in (cfg.get("callbacks") or {}).values())
    return [callback.on_transform_commit for callback in found if hasattr(callback, "on_transform_commit")]


def report_skipped(book: Any, count: int) -> None:
    """The first skipped lines of the run, and how many more there are and where."""
    if not count:
        return
    print_skipped(book.first_skipped(SHOW_SKIPPED))
    if count > SHOW_SKIPPED:
        print(f"... and {count - SHOW_SKIPPED} more skipped; all in {book.skipped_path}")


def _bar(done: int) -> Any:
    from sagelab import progress

    bar = progress.bar(desc="batch transform", unit="line")
    if done:
        bar.update(done)
    return bar

