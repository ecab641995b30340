"""``hpo.warm_start``: an earlier study's finished trials, read back to seed a new study.

The earlier study is named by its folder in ``hpo.dir`` or by its MLflow parent run id; either way what is
read is what every study leaves behind: ``spec.json`` (its space and objectives) and ``trials.csv`` (one row
per trial with ``config.<param>`` columns and the objectives in natural units), from the folder
(``results/trials.csv``, or the trial records if it was never finalized) or from the run's artifacts
(``spec.json``, ``hpo/trials.csv``). Only completed trials that measured every objective of the new study
count; with a different search space only the parameters both spaces share are kept (one printed line), and
a trial whose value lies outside the new space is left out.

How each backend uses them (:mod:`sagelab.hpo.seeding`): Optuna adds them to the new study as finished trials
(``study.add_trials``), so TPE's model starts from them; Syne Tune and Ray run the best few first as
``points_to_evaluate``. (Syne Tune 0.16's transfer-learning schedulers -- ``ZeroShotTransfer``,
``BoundingBox`` -- want ``TransferLearningTaskEvaluations``: per-task arrays of seeds x fidelities x objectives
over a shared config table; from one earlier study that only re-ranks the same configurations, which the
points already do.)
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from sagelab.config import ConfigError
from sagelab.hpo.objectives import Objective
from sagelab.hpo.seeding import _BAD, coerce
from sagelab.hpo.space import SearchSpace

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def resolve(hpo: Any, name: str, hpo_dir: Path, tracking_uri: str, space: SearchSpace,
            objectives: list[Objective], defaults: Mapping[str, Any] | None = None
            ) -> tuple[str | None, list[dict[str, Any]]]:
    """(``hpo.warm_start``, its trials by :func:`load`) for the study ``name``; (None, []) when it is not set."""
    ref = hpo.get("warm_start")
    if ref in (None, ""):
        return None, []
    ref = str(ref)
    if ref == name:
        raise ConfigError("hpo.warm_start", f"names this study itself ({name}); a study resumes by running its "
                          "command again, warm start is for seeding a new study from an earlier one.")
    return ref, load(ref, hpo_dir, tracking_uri, space, objectives, defaults)


def load(ref: str, hpo_dir: Path, tracking_uri: str, space: SearchSpace, objectives: list[Objective],
         defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The earlier study's usable trials, best first: ``{"trial_id", "config", "values"}``; ``values`` are the
    minimised objective values by key, ``config`` holds the shared parameters only -- and, for a shared
    parameter conditioned on a choice the earlier study did not make (its lr, this one's lr per model), that
    choice's value in ``defaults`` (this study's default configuration), as :func:`~sagelab.hpo.seeding.warm_points`
    fills any parameter the earlier space lacked."""
    spec_data, table = _read(ref, hpo_dir, tracking_uri)
    earlier = SearchSpace.from_config(spec_data["space"], where="hpo.warm_start")
    shared = [n for n in space.params if n in earlier.params]
    implied = {p.given for n in shared if (p := space.params[n]).given and p.given not in shared}
    if not shared:
        raise ConfigError("hpo.warm_start", f"study '{ref}' searched {', '.join(earlier.params)}, which this "
                          f"space ({', '.join(space.params)}) does not share: nothing to start from.")
    if set(shared) != set(space.params) or set(shared) != set(earlier.params):
        print(f"sagelab hpo: warm start from '{ref}': its search space differs; using the parameters both share "
              f"({', '.join(shared)})", file=sys.stderr)
    missing = [o.name for o in objectives if o.name not in table.columns]
    if missing:
        raise ConfigError("hpo.warm_start", f"study '{ref}' did not measure {', '.join(missing)} (its objectives: "
                          f"{', '.join(o['name'] for o in spec_data['objectives'])}).")
    trials = []
    rows = table[table["status"] == "completed"] if "status" in table.columns else table.iloc[0:0]
    for _, row in rows.iterrows():
        if any(row[o.name] != row[o.name] for o in objectives):  # NaN: not measured
            continue
        config = {g: coerce(space.params[g], (defaults or {}).get(g)) for g in implied}
        for n in [n for n in space.order() if n in shared]:  # choices first: lr is checked in the chosen range
            config[n] = coerce(space.active(n, config), row.get(f"config.{n}")) \
                if config.get(space.params[n].given) is not _BAD else _BAD
            if config[n] is _BAD:
                break
        if any(v is _BAD for v in config.values()):
            continue  # outside this study's space
        trials.append({"trial_id": int(row["trial_id"]), "config": config,
                       "values": {o.key: o.minimised(row[o.name]) for o in objectives}})
    first = objectives[0].key
    trials.sort(key=lambda t: t["values"][first])
    if not trials:
        print(f"sagelab hpo: warm start from '{ref}': no completed trial of it fits this study", file=sys.stderr)
    return trials


def _read(ref: str, hpo_dir: Path, tracking_uri: str) -> tuple[dict[str, Any], Any]:
    """(spec.json as a dict, the trials table) of the study ``ref`` names."""
    import pandas as pd

    folder = Path(hpo_dir) / ref
    if "/" not in ref and (folder / "spec.json").is_file():
        data = json.loads((folder / "spec.json").read_text())
        csv = folder / "results" / "trials.csv"
        if csv.is_file():
            return data, pd.read_csv(csv)
        from sagelab.hpo.spec import StudySpec
        from sagelab.hpo.study import trials_table

        return data, trials_table(StudySpec(**data))
    if RUN_ID.match(ref):
        found = _from_mlflow(ref, tracking_uri)
        if found is not None:
            return found
    studies = sorted(p.name for p in Path(hpo_dir).glob("*") if (p / "spec.json").is_file())
    known = f" (studies there: {', '.join(studies[:8])}{' ...' if len(studies) > 8 else ''})" if studies else ""
    raise ConfigError("hpo.warm_start", f"'{ref}' is neither a study in {hpo_dir}{known} nor the parent run of "
                      f"a study in the MLflow store {tracking_uri}.")


def _from_mlflow(run_id: str, tracking_uri: str) -> tuple[dict[str, Any], Any] | None:
    """spec.json and hpo/trials.csv of the parent run ``run_id``; None if there is no such run."""
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    if run.data.tags.get("sagelab.hpo.role") != "parent":
        raise ConfigError("hpo.warm_start", f"MLflow run {run_id} is not a study's parent run (tag "
                          "sagelab.hpo.role=parent); give the parent run of the earlier study.")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            spec_path = client.download_artifacts(run_id, "spec.json", tmp)
            csv_path = client.download_artifacts(run_id, "hpo/trials.csv", tmp)
        except (MlflowException, OSError) as err:
            raise ConfigError("hpo.warm_start", f"MLflow run {run_id} lacks the study's spec.json or "
                              f"hpo/trials.csv ({err}); was the study finalized?") from None
        return json.loads(Path(spec_path).read_text()), pd.read_csv(csv_path)
