"""One rule for the roles of the classes: skhybrid.class_roles."""

from __future__ import annotations

import numpy as np
import pytest

from skhybrid.class_roles import positive_label, resolve_class_roles, roles_of
from skhybrid.estimators import aggregate_proba

#: (classes as classes_ sorts them, negative, positive)
ENCODINGS = [
    (["benign", "malignant"], "benign", "malignant"),
    (["malignant", "normal"], "normal", "malignant"),
    (["B", "M"], "B", "M"),
    ([0, 1], 0, 1),
    ([1, 2], 1, 2),
    ([-1, 1], -1, 1),
    ([False, True], False, True),
]


@pytest.mark.parametrize(("classes", "negative", "positive"), ENCODINGS)
def test_roles_of_every_encoding(classes, negative, positive):
    roles = resolve_class_roles(np.array(classes))
    assert roles.negative == negative
    assert roles.positive == positive
    assert roles.negative_index == classes.index(negative)
    assert roles.positive_index == classes.index(positive)


@pytest.mark.parametrize(("classes", "negative", "positive"), ENCODINGS)
def test_mil_aggregation_follows_the_roles(classes, negative, positive):
    roles = resolve_class_roles(np.array(classes))
    # One image, three tiles: two clearly negative, one clearly positive -> positive image.
    p_pos = np.array([0.1, 0.2, 0.9])
    tile = np.zeros((1, 3, 2))
    tile[0, :, roles.positive_index] = p_pos
    tile[0, :, roles.negative_index] = 1 - p_pos
    image = aggregate_proba(tile, "mil", negative_index=roles.negative_index)
    assert image[0, roles.positive_index] == pytest.approx(0.9)
    assert image[0, roles.negative_index] == pytest.approx(0.1)
    assert np.array(classes, dtype=object)[image[0].argmax()] == positive


def test_explicit_parameters_win_and_are_checked():
    assert resolve_class_roles(["cat", "dog"], negative_class="dog").positive == "cat"
    assert resolve_class_roles(["cat", "dog"], pos_label="cat").negative == "dog"
    assert resolve_class_roles([0, 1], negative_class=1).positive == 0
    with pytest.raises(ValueError, match="not one of the classes"):
        resolve_class_roles(["benign", "malignant"], negative_class="normal")
    with pytest.raises(ValueError, match="disagree"):
        resolve_class_roles(["benign", "malignant"], negative_class="benign", pos_label="benign")


def test_unknown_names_ask_for_the_parameter():
    with pytest.raises(ValueError, match="negative_class="):
        resolve_class_roles(["cat", "dog"])


def test_subtypes_have_a_negative_class_only():
    roles = resolve_class_roles(["benign", "ductal_carcinoma", "lobular_carcinoma"])
    assert roles.negative == "benign" and roles.positive is None
    with pytest.raises(ValueError, match="No single positive class"):
        _ = roles.positive_index


@pytest.mark.parametrize(
    ("labels", "expected"),
    [(["benign"], "malignant"), (["malignant"], "malignant"), (["B"], "M"), (["M"], "M"), ([0], 1),
     ([False], True), ([0, 1], 1), ([1, 2], 2), (["malignant", "normal"], "malignant")],
)  # fmt: skip
def test_positive_label_of_one_or_two_labels(labels, expected):
    assert positive_label(np.array(labels)) == expected


def test_roles_of_reads_the_final_step_and_its_parameter():
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    class Fitted:
        classes_ = np.array(["x", "y"])
        negative_class = "y"

    pipe = Pipeline([("id", FunctionTransformer()), ("clf", Fitted())])
    assert roles_of(pipe).positive == "x"
