"""Feature encoding per property: category/multi-hot with OTHER, numerical norms, buckets, text, none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sagelab.config import ConfigError
from sagelab.tasks.graph.features import FeatureEncoder, resolve_specs
from sagelab.tasks.graph.property_graph import Property, PropertyGraph


def people(interests: list[list[str]], ages: list, city: list | None = None, names: list | None = None) -> PropertyGraph:
    n = len(interests)
    props = {
        "name": Property("name", "string", False, names or [f"p{i}" for i in range(n)]),
        "interests": Property("interests", "string", True, interests),
        "age": Property("age", "int", False, ages),
    }
    if city is not None:
        props["city"] = Property("city", "string", False, city)
    return PropertyGraph([f"n{i}" for i in range(n)], ["person"] * n, props, np.zeros(0, np.int64), np.zeros(0, np.int64))


def encode(graph: PropertyGraph, features: dict | None = None, fit_on: PropertyGraph | None = None) -> tuple[FeatureEncoder, np.ndarray]:
    base = fit_on or graph
    encoder = FeatureEncoder.fit(base, resolve_specs(base, features, "name"))
    return encoder, encoder.transform(graph)


def test_defaults_follow_column_types_and_skip_the_name() -> None:
    graph = people([["a"], ["b"]], [20, 40])
    encoder, x = encode(graph)
    assert [(p, t) for p, t, _ in encoder.dims()] == [("name", "none"), ("interests", "category"), ("age", "numerical")]
    assert x.shape == (2, 2 + 1 + 1)  # a, b, OTHER + min-max age


def test_multi_hot_with_capped_vocabulary_and_other() -> None:
    graph = people([["chess", "go"], ["chess"], ["poker", "chess"], ["go"]], [1, 2, 3, 4])
    encoder, x = encode(graph, {"interests": {"max_categories": 2}, "age": {"type": "none"}})
    spec = encoder.specs[1]
    assert spec["vocab"] == ["chess", "go"]  # most frequent first; poker did not make the cut
    assert x.tolist() == [[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 1, 0]]
    # a value first seen after training lands in OTHER, the vocabulary (and width) stay fixed
    later = people([["tennis", "go"]], [5])
    assert encoder.transform(later).tolist() == [[0, 1, 1]]


def test_separator_splits_a_plain_string_column() -> None:
    graph = people([[], []], [1, 2], city=["paris;rome", "rome"])
    encoder, x = encode(graph, {"city": {"type": "category", "separator": ";"}, "interests": {"type": "none"},
                                "age": {"type": "none"}})
    assert encoder.specs[-1]["vocab"] == ["rome", "paris"]
    assert x.tolist() == [[1, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize(
    ("norm", "expected"),
    [("min-max", [0.0, 0.5, 1.0, 0.5]), ("standard", [-1.2247, 0.0, 1.2247, 0.0]), ("none", [10, 20, 30, 20])],
)
def test_numerical_norms_and_missing_values(norm: str, expected: list[float]) -> None:
    graph = people([[]] * 4, [10, 20, 30, None])  # the missing age takes the training mean (20)
    _, x = encode(graph, {"age": {"norm": norm}, "interests": {"type": "none"}})
    assert np.allclose(x[:, 0], expected, atol=1e-4)


def test_row_norm_on_vectors() -> None:
    graph = PropertyGraph(["a", "b"], ["doc"] * 2, {"words": Property("words", "vector", False, np.array([[1.0, 3.0], [0.0, 0.0]]))},
                          np.zeros(0, np.int64), np.zeros(0, np.int64))
    _, x = encode(graph, {"words": {"norm": "row"}})
    assert x.tolist() == [[0.25, 0.75], [0.0, 0.0]]


def test_bucket_numerical_clamps_out_of_range_values() -> None:
    graph = people([[]] * 4, [5, 25, 59, 99])
    _, x = encode(graph, {"age": {"type": "bucket_numerical", "range": [20, 60], "buckets": 4}, "interests": {"type": "none"}})
    assert x.argmax(1).tolist() == [0, 0, 3, 3]
    assert x.sum(1).tolist() == [1, 1, 1, 1]


def test_state_round_trips_through_json() -> None:
    graph = people([["a", "b"], ["c"]], [1, 9])
    encoder, x = encode(graph, {"age": {"type": "bucket_numerical", "range": [0, 10], "buckets": 2}})
    again = FeatureEncoder.from_state(json.loads(json.dumps(encoder.state_dict())))
    assert np.array_equal(again.transform(graph), x)


@pytest.mark.parametrize(
    ("features", "key"),
    [
        ({"hobbies": {"type": "category"}}, "task.features.hobbies"),
        ({"age": {"type": "embedding"}}, "task.features.age.type"),
        ({"interests": {"type": "numerical"}}, "task.features.interests.type"),
        ({"age": {"type": "bucket_numerical", "buckets": 3}}, "task.features.age.range"),
        ({"age": {"type": "bucket_numerical", "range": [0, 9], "buckets": 0}}, "task.features.age.buckets"),
        ({"age": {"norm": "log"}}, "task.features.age.norm"),
        ({"age": {"norm": "row"}}, "task.features.age.norm"),
        ({"age": {"type": "text"}}, "task.features.age.type"),
        ({"interests": {"max_category": 5}}, "task.features.interests"),
    ],
)
def test_bad_feature_config_names_the_key(features: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_specs(people([["a"]], [1]), features, "name")
    assert err.value.key == key


def test_schema_mismatch_is_a_clear_error() -> None:
    encoder, _ = encode(people([["a"]], [1]))
    changed = people([["a"]], [1])
    changed.properties["age"] = Property("age", "string", False, ["one"])
    with pytest.raises(ConfigError, match="property 'age' is string; the model was trained with int"):
        encoder.transform(changed)
    del changed.properties["interests"]
    with pytest.raises(ConfigError, match="'interests' is missing"):
        encoder.transform(changed)


def test_text_embeddings_put_similar_jobs_close() -> None:
    graph = people([[]] * 3, [1, 2, 3], city=["football coach", "rugby coach", "jazz pianist"])
    encoder, x = encode(graph, {"city": {"type": "text"}, "interests": {"type": "none"}, "age": {"type": "none"}})
    assert x.shape == (3, 384)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    assert x[0] @ x[1] > x[0] @ x[2]
