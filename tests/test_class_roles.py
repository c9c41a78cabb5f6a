"""One rule for the roles of the classes: skhybrid.class_roles."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from skhybrid.class_roles import (
    BENIGN_SUBTYPES,
    MALIGNANT_SUBTYPES,
    positive_label,
    resolve_class_roles,
    resolve_negative_classes,
    roles_of,
)
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


# -- the negative set ------------------------------------------------------------------------------
def test_subtype_names_match_the_breakhis_loader():
    # class_roles (layer 0) keeps its own copy of the names; it must equal the loader's order.
    from skhybrid.datasets import BREAKHIS_SUBTYPES

    assert tuple(BREAKHIS_SUBTYPES.values()) == BENIGN_SUBTYPES + MALIGNANT_SUBTYPES


def test_breakhis_subtype_names_give_the_four_benign_subtypes():
    subtypes = np.array(sorted(BENIGN_SUBTYPES + MALIGNANT_SUBTYPES))  # classes_ order
    assert resolve_negative_classes(subtypes) == (
        "adenosis",
        "fibroadenoma",
        "phyllodes_tumor",
        "tubular_adenoma",
    )
    # A fold holding only some subtypes; spelling variants of the names count too.
    assert resolve_negative_classes(["Adenosis", "ductal carcinoma", "Phyllodes-Tumor"]) == (
        "Adenosis",
        "Phyllodes-Tumor",
    )
    with pytest.raises(ValueError, match="no benign subtype"):
        resolve_negative_classes(["ductal_carcinoma", "lobular_carcinoma"])


@pytest.mark.parametrize(("classes", "negative", "positive"), ENCODINGS)
def test_negative_set_of_two_classes_is_the_negative_class(classes, negative, positive):
    assert resolve_negative_classes(np.array(classes)) == (negative,)


def test_negative_set_from_the_parameters():
    codes = np.arange(8)  # load_breakhis(target="subtype")
    assert resolve_negative_classes(codes, [3, 1, 0, 2]) == (0, 1, 2, 3)  # classes order
    assert resolve_negative_classes(codes, negative_class=5) == (5,)
    assert resolve_negative_classes(codes, [0, 1], negative_class=1) == (0, 1)
    # Without them, numbers follow the binary convention: only the smallest is negative.
    assert resolve_negative_classes(codes) == (0,)
    assert resolve_negative_classes(["benign", "ductal", "lobular"]) == ("benign",)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"negative_classes": [8]}, "not one of the classes"),
        ({"negative_classes": []}, "empty"),
        ({"negative_classes": list(range(8))}, "at least one must be positive"),
        ({"negative_classes": 0}, "list of class labels"),
        ({"negative_classes": [0, 1], "negative_class": 2}, "not one of negative_classes"),
        ({"negative_class": 9}, "not one of the classes"),
    ],
)
def test_negative_set_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve_negative_classes(np.arange(8), **kwargs)


def test_negative_set_needs_two_classes_it_can_tell():
    with pytest.raises(ValueError, match="at least two"):
        resolve_negative_classes(["benign"])
    with pytest.raises(ValueError, match="Cannot tell"):
        resolve_negative_classes(["cat", "dog", "emu"])


# -- the whole library agrees on every encoding ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_images():
    from skhybrid.datasets import make_histology

    data = make_histology(12, image_size=(32, 64), grid=(1, 2), random_state=0)
    return data.images, data.target.astype(bool)  # True = malignant


@pytest.mark.parametrize(("classes", "negative", "positive"), ENCODINGS)
def test_reports_relabeler_and_cli_agree_on_every_encoding(
    classes, negative, positive, tiny_images, tmp_path, capsys
):
    from skhybrid import CNNClassifier, SelfLearningRelabeler, SubImageTiler, binary_report
    from skhybrid.cli import main
    from skhybrid.model_io import save_model
    from skhybrid.workflow import make_relabeling_proposer

    images, malignant = tiny_images
    y = np.where(malignant, positive, negative)
    if isinstance(positive, (bool, np.bool_)):
        y = malignant.copy()

    # Reports: every truly malignant image called malignant, every benign one too.
    report = binary_report(y, np.full(len(y), positive, dtype=y.dtype))
    assert report.sensitivity == 1.0 and report.specificity == 0.0

    # The relabeler only changes tiles of the malignant images.
    bags = SubImageTiler(grid=(1, 2)).fit_transform(images)
    relabeler = SelfLearningRelabeler(make_relabeling_proposer(0), n_rounds=1, random_state=0)
    relabeler.fit(bags, y)
    assert relabeler.negative_class_ == negative
    assert (relabeler.tile_labels_[y == negative] == negative).all()

    # The command line prints the probability of the positive class, for a model with "mil".
    pipe = Pipeline([
        ("tiles", SubImageTiler(grid=(1, 2))),
        ("clf", CNNClassifier("resnet18", weights=None, max_epochs=1, valid_size=None,
                              aggregation="mil", verbose=0, random_state=0)),
    ])  # fmt: skip
    pipe.fit(images, y)
    assert roles_of(pipe).positive == positive
    model = tmp_path / "model.joblib"
    save_model(pipe, model)
    png = tmp_path / "tissue.png"
    from PIL import Image

    Image.fromarray(images[0]).save(png)
    assert main(["predict", str(model), str(png)]) == 0
    out = capsys.readouterr().out
    assert f"(P({positive}) = " in out
    p_positive = pipe.predict_proba(images[:1])[0, list(pipe.classes_).index(positive)]
    assert f"(P({positive}) = {p_positive:.3f})" in out
