"""Syne Tune's entry point for one trial: run the trial as an ordinary sagelab command.

Syne Tune's LocalBackend starts ``python trial_entry.py --st_config_json_filename
<trial>/config.json --st_checkpoint_dir <trial>/checkpoints``. This script reads
the sampled configuration, runs ``python run.py <overrides>`` (see
:meth:`StudySpec.trial_argv`) with stdout shared so Syne Tune sees the reports,
then

* prints the final-round report (held back by the reporter, so that the scheduler
  cannot stop the run while it closes its MLflow record);
* turns "the run exited 0 but reported nothing" into a failure, because Syne
  Tune would otherwise abort the whole study on a trial without metrics;
* records the exit code in ``exit.json``, and the reason when it stopped a trial that ran past
  ``hpo.trial_timeout_s``.

It dies with the study: see :mod:`sagelab.hpo.lifeline` (LocalBackend's ``Popen`` takes no hook, so this
script binds itself to its parent first thing, and its ``run.py`` to itself).

The study passes its spec through the environment (``SAGELAB_HPO_SPEC``):
LocalBackend splits the command line on spaces, so only simple values go there.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

SPEC_ENV = "SAGELAB_HPO_SPEC"


def _args(argv: list[str]) -> dict[str, str]:
    out, key = {}, None
    for token in argv:
        if token.startswith("--"):
            key = token[2:]
            out[key] = ""
        elif key is not None:
            out[key] = token
            key = None
    return out


def main(argv: list[str] | None = None) -> int:
    from sagelab.hpo.lifeline import STUDY_PID_ENV, TIMEOUT_EXIT, die_with_parent, launch, timed_out, wait

    if os.environ.get(STUDY_PID_ENV):  # first, so a study killed right now leaves nothing behind
        die_with_parent(int(os.environ[STUDY_PID_ENV]))
    from syne_tune.constants import ST_CHECKPOINT_DIR, ST_CONFIG_JSON_FNAME_ARG

    from sagelab.config import PROJECT_ROOT
    from sagelab.hpo.records import read_json, write_json
    from sagelab.hpo.report import syne_tune_payload
    from sagelab.hpo.spec import StudySpec

    args = _args(sys.argv[1:] if argv is None else argv)
    spec = StudySpec.load(os.environ[SPEC_ENV])
    trial_dir = Path(args[ST_CHECKPOINT_DIR]).parent
    config = json.loads(Path(args[ST_CONFIG_JSON_FNAME_ARG]).read_text())
    cmd = spec.trial_argv(trial_dir.name, config)
    (trial_dir / "command.txt").write_text(" ".join(cmd) + "\n")
    sys.stdout.flush()
    child = launch(cmd, cwd=PROJECT_ROOT)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    code = wait(child, spec.trial_timeout_s)
    if code is None:
        reason = timed_out(trial_dir.name, spec.trial_timeout_s or 0, sys.stderr)
        write_json(trial_dir / "exit.json", {"returncode": TIMEOUT_EXIT, "reason": reason})
        return TIMEOUT_EXIT
    result = read_json(trial_dir / "result.json")
    if code == 0:
        history = (result or {}).get("history") or []
        if not history:
            print(f"sagelab hpo: trial {trial_dir.name} finished without reporting any validation round "
                  f"(is task.metric '{spec.task_metric}' logged?)", file=sys.stderr)
            code = 3
        elif result.get("deferred"):
            from syne_tune import Reporter

            Reporter()(**syne_tune_payload(history[-1]))
    write_json(trial_dir / "exit.json", {"returncode": code})
    return code


if __name__ == "__main__":
    sys.exit(main())
