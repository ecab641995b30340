"""Named-entity recognition on SageMaker Ground Truth NER manifests: ``conf/task/ner.yaml`` + this package.

``task.py`` is the cheap part (config schema, checks, predict); ``manifest.py`` reads and writes Ground Truth
manifests; ``tagging.py`` maps character spans to BIO tags on the tokenizer's words and back; ``data.py`` and
``module.py`` are the Lightning parts; ``convert.py`` turns CoNLL files (WNUT-17) into manifests.
"""
