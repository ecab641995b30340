"""GLUE sentence(-pair) classification and regression: ``conf/task/glue_*.yaml`` + this package.

``task.py`` is the cheap part (config schema, checks, predict); ``data.py`` and ``module.py`` are the
Lightning parts, imported only when a run needs them; ``formats.py`` reads GLUE's own files.
"""
