"""``mode=diagnose``: a binary classifier looked at before it is deployed, on its evaluation set.

A task opts in through the contract (:meth:`sagelab.tasks.base.Task.diagnose_inputs`): it scores its
evaluation set and hands back a :class:`DiagnoseInputs` -- scores, labels, texts, its training texts for the
data checks, optionally a way to attribute a score to tokens, and optionally the names of its input features
with a way to rescore the evaluation set with one of them shuffled (permutation importance). Everything else
is here and knows no task:

* :mod:`.metrics` -- AUC with a bootstrap interval, thresholds (``diagnose.target_tpr``, ``diagnose.max_fpr``,
  fixed values) with TPR / FPR / precision and counts per 100,000 events, outcome bands, calibration (ECE);
* :mod:`.datachecks` -- the data itself: duplicates shared by train and evaluation (exact and near), labels
  predictable from one token or from the length, class balance;
* :mod:`.attribution` -- integrated gradients (Captum) over a Hugging Face classifier's input embeddings;
* :mod:`.importance` -- permutation importance: the AUC lost when one input feature is shuffled, for a task
  that names its features and rescores the evaluation set with one of them shuffled;
* :mod:`.plots` -- the figures (PNG); :mod:`.report` -- ``report.json``, ``report.html`` and the summary;
* :mod:`.mode` -- the mode itself: all of the above, logged to the run under ``diagnose/``.

This module is cheap (no numpy, torch or sklearn): the task module imports it for the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

#: (evaluation indices) -> per example, its words with their attribution toward the positive class
Attribute = Callable[[Sequence[int]], "list[list[tuple[str, float]]]"]
#: (feature name, seed) -> the evaluation set's scores (same order) with that feature shuffled across the
#: task's inputs by a generator seeded with ``seed``
Permuted = Callable[[str, int], Sequence[float]]


@dataclass
class DiagnoseInputs:
    """What a task hands to ``mode=diagnose``: its evaluation set scored by the model, and its training data."""

    #: the model's probability of the positive class (label 1), one per evaluation example
    scores: Sequence[float]
    #: the true labels of the evaluation examples, 0 or 1
    labels: Sequence[int]
    #: the evaluation texts (a pair joined with " ||| "), for the data checks and the report
    texts: Sequence[str]
    #: the training texts and labels as the task trains on them, for the leakage and sampling checks
    train_texts: Sequence[str] = field(default_factory=list)
    train_labels: Sequence[int] = field(default_factory=list)
    #: what the positive class is, for the report (e.g. "label 1")
    positive: str = "label 1"
    #: where the evaluation and training sets come from, for the report
    source: dict[str, str] = field(default_factory=dict)
    #: token attributions for chosen evaluation examples (None: the report has no attribution section)
    attribute: Attribute | None = None
    #: the input features (groups of columns, e.g. a graph's node properties) permutation importance ranks ...
    features: Sequence[str] = field(default_factory=list)
    #: ... and how to rescore the evaluation set with one of them shuffled (None: no importance section)
    permuted: Permuted | None = None
