"""Extractive question answering (SQuAD v1.1): ``conf/task/qa.yaml`` + this package.

``task.py`` is the cheap part (config schema, checks, predict input); ``squad.py`` reads, splits and
tokenises; ``data.py`` and ``module.py`` are the Lightning parts; ``postprocess.py`` turns logits into
answers and scores them.
"""
