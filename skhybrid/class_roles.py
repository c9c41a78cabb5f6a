"""Which class is negative (benign tissue) and which is positive (malignant): one rule.

Every part of skhybrid that needs to know the role of a class asks :func:`resolve_class_roles`:
the metrics and scorers (``pos_label``), the self-learning rule (``negative_class``), the
``"mil"`` image aggregation, the workflow's reports and the command line. The rule, in order:

1. an explicit ``negative_class`` (the parameter of :class:`~skhybrid.SelfLearningRelabeler`
   and of the classifiers) or ``pos_label`` (the metrics' parameter) decides;
2. otherwise the class names decide: exactly one class named like benign tissue
   (``"benign"``, ``"normal"``, ``"negative"``, ``"healthy"``, any case) is negative; or, with
   two classes, exactly one named like a tumour (``"malignant"``, ``"tumor"``, ``"tumour"``,
   ``"cancer"``, ``"positive"``, ``"abnormal"``) is positive and the other negative; the
   one-letter pairs ``{"B", "M"}`` and ``{"N", "T"}`` count too;
3. otherwise numbers and booleans follow scikit-learn's binary convention: the smallest class
   (``classes_[0]``: 0, -1, 1 of ``{1, 2}``, False) is negative, the largest positive;
4. anything else (two unknown strings) raises a ``ValueError`` that asks for the parameter.

With more than two classes only the negative class has a role; every other class is a kind of
positive, and ``positive`` is ``None``.

Several negative classes (the four benign BreakHis subtypes) form the *negative set* of
:func:`resolve_negative_classes`: ``negative_classes=`` decides; else ``negative_class=``; else
classes that are all BreakHis subtype names have their benign subtypes as the set; else the set
is ``{resolve_class_roles(classes).negative}`` (for two classes, the negative class).

>>> resolve_class_roles(["malignant", "normal"]).negative
'normal'
>>> resolve_class_roles([1, 2]).positive
2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BENIGN_SUBTYPES",
    "MALIGNANT_SUBTYPES",
    "NEGATIVE_NAMES",
    "POSITIVE_NAMES",
    "ClassRoles",
    "positive_label",
    "resolve_class_roles",
    "resolve_negative_classes",
    "roles_of",
]

#: Class names (compared case-insensitively) that mean "benign tissue": the negative class.
NEGATIVE_NAMES = frozenset({"benign", "normal", "negative", "healthy"})
#: Class names (compared case-insensitively) that mean "tumour": the positive class.
POSITIVE_NAMES = frozenset({"malignant", "tumor", "tumour", "cancer", "positive", "abnormal"})
#: The benign BreakHis subtypes (folder names, as ``load_breakhis(target="subtype")`` names them
#: in ``target_names``): the negative set of :func:`resolve_negative_classes`. Kept here, not
#: imported from ``skhybrid.datasets``, because this module is layer 0 (numpy only).
BENIGN_SUBTYPES = ("adenosis", "fibroadenoma", "phyllodes_tumor", "tubular_adenoma")
#: The malignant BreakHis subtypes.
MALIGNANT_SUBTYPES = (
    "ductal_carcinoma",
    "lobular_carcinoma",
    "mucinous_carcinoma",
    "papillary_carcinoma",
)
#: One-letter codes, recognised only as a pair (``{"B", "M"}``): (negative, positive).
LETTER_PAIRS = (("b", "m"), ("n", "t"))
# For a label set holding one class only (a fold of benign patients): its counterpart.
_COUNTERPARTS = {
    "benign": "malignant",
    "normal": "malignant",
    "negative": "positive",
    "healthy": "malignant",
    "b": "m",
    "n": "t",
}


@dataclass(frozen=True)
class ClassRoles:
    """The resolved roles of the classes of a problem.

    Attributes
    ----------
    classes : ndarray
        The classes, in the order given (``classes_``).
    negative : label
        The negative class (benign tissue).
    positive : label or None
        The positive class of a binary problem; ``None`` with more than two classes.
    """

    classes: np.ndarray
    negative: Any
    positive: Any

    @property
    def negative_index(self) -> int:
        """Column of the negative class in ``classes`` (and in ``predict_proba``)."""
        return _index_of(self.classes, self.negative)

    @property
    def positive_index(self) -> int:
        """Column of the positive class; a ``ValueError`` with more than two classes."""
        if self.positive is None:
            raise ValueError(
                f"No single positive class among {len(self.classes)} classes "
                f"{self.classes.tolist()}; only the negative class {self.negative!r} has a role."
            )
        return _index_of(self.classes, self.positive)


def _index_of(classes: np.ndarray, label: Any) -> int:
    return int(np.flatnonzero(classes == label)[0])


def _is_numeric(classes: np.ndarray) -> bool:
    return classes.dtype.kind in "biuf" or all(
        isinstance(c, (bool, np.bool_, int, float, np.number)) for c in classes.tolist()
    )


def _named(classes: np.ndarray, names: frozenset[str]) -> list[Any]:
    found = [c for c in classes.tolist() if isinstance(c, str) and c.lower() in names]
    if found or len(classes) != 2:
        return found
    lowered = [str(c).lower() for c in classes.tolist()]
    for pair in LETTER_PAIRS:
        if sorted(lowered) == sorted(pair):
            side = 0 if names is NEGATIVE_NAMES else 1
            return [c for c in classes.tolist() if str(c).lower() == pair[side]]
    return found


def _as_classes(classes: Any) -> np.ndarray:
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty 1-D list of labels, got {classes!r}.")
    return classes


def _check_member(classes: np.ndarray, name: str, label: Any) -> Any:
    hits = np.flatnonzero(classes == label) if len(classes) else []
    if len(hits) == 0:
        raise ValueError(f"{name}={label!r} is not one of the classes {classes.tolist()}.")
    return classes[hits[0]].item() if isinstance(classes[hits[0]], np.generic) else classes[hits[0]]


def _other(classes: np.ndarray, label: Any) -> Any:
    rest = classes[classes != label]
    return rest[0].item() if isinstance(rest[0], np.generic) else rest[0]


def resolve_class_roles(
    classes: Any, *, negative_class: Any = None, pos_label: Any = None
) -> ClassRoles:
    """Resolve the negative and positive class of ``classes`` (see the module's rule).

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        The classes, e.g. an estimator's ``classes_``; at least two.
    negative_class : label, default=None
        The negative class, when the names do not tell (e.g. ``"normal"`` with a third name).
    pos_label : label, default=None
        The positive class of a binary problem (the metrics' parameter); the other class is
        negative. Not both.

    Returns
    -------
    ClassRoles

    Raises
    ------
    ValueError
        When a given class is not among ``classes``, both parameters are given and disagree,
        or the roles cannot be inferred from the labels.
    """
    classes = _as_classes(classes)
    if len(classes) < 2:
        raise ValueError(f"Class roles need at least two classes, got {classes.tolist()}.")
    binary = len(classes) == 2
    if negative_class is not None:
        negative = _check_member(classes, "negative_class", negative_class)
        if pos_label is not None and (
            not binary or _check_member(classes, "pos_label", pos_label) == negative
        ):
            raise ValueError(
                f"negative_class={negative_class!r} and pos_label={pos_label!r} disagree for "
                f"classes {classes.tolist()}."
            )
        return ClassRoles(classes, negative, _other(classes, negative) if binary else None)
    if pos_label is not None:
        positive = _check_member(classes, "pos_label", pos_label)
        if not binary:
            raise ValueError(
                f"pos_label needs two classes, got {len(classes)}; pass negative_class instead."
            )
        return ClassRoles(classes, _other(classes, positive), positive)
    negatives = _named(classes, NEGATIVE_NAMES)
    if len(negatives) == 1:
        negative = negatives[0]
        return ClassRoles(classes, negative, _other(classes, negative) if binary else None)
    positives = _named(classes, POSITIVE_NAMES)
    if binary and len(positives) == 1 and not negatives:
        return ClassRoles(classes, _other(classes, positives[0]), positives[0])
    if _is_numeric(classes) and not negatives and not positives:
        ordered = sorted(classes.tolist())
        return ClassRoles(classes, ordered[0], ordered[-1] if binary else None)
    raise ValueError(
        f"Cannot tell which class is negative (benign tissue) among {classes.tolist()}. "
        f"Pass negative_class= to an estimator, or pass pos_label= to a metric (e.g. "
        f"negative_class={classes.tolist()[0]!r}, pos_label={classes.tolist()[-1]!r})."
    )


def positive_label(labels: Any, pos_label: Any = None) -> Any:
    """The positive class of the labels seen by a binary metric.

    Like :func:`resolve_class_roles`, and also defined when only one label is present (a
    fold holding only benign patients): a negative-looking label (``"benign"``, 0, False, the
    smallest of two numbers) gets its counterpart (``"malignant"``, 1, True), a
    positive-looking one is itself positive.

    Parameters
    ----------
    labels : array-like
        The distinct labels of ``y_true`` and ``y_pred`` (one or two).
    pos_label : label, default=None
        An explicit positive class; with two labels it must be one of them.

    Returns
    -------
    label
    """
    labels = _as_classes(np.unique(np.asarray(labels)))
    if len(labels) > 2:
        raise ValueError(
            f"Only binary problems are supported; got {len(labels)} labels: {labels.tolist()!r}."
        )
    if len(labels) == 2:
        return resolve_class_roles(labels, pos_label=pos_label).positive
    if pos_label is not None:
        return pos_label
    (label,) = labels.tolist()
    if isinstance(label, str):
        if label.lower() in POSITIVE_NAMES or label.lower() in ("m", "t"):
            return label
        if label.lower() in NEGATIVE_NAMES or label.lower() in ("b", "n"):
            counterpart = _COUNTERPARTS[label.lower()]
            return counterpart.upper() if label.isupper() else counterpart
        raise ValueError(
            f"Cannot infer the positive class from the single label {label!r}; pass pos_label."
        )
    if isinstance(label, (bool, np.bool_)):
        return True
    return 1 if label <= 0 else label


def roles_of(estimator: Any) -> ClassRoles:
    """The class roles of a fitted classifier (or of a Pipeline's final step).

    Uses the estimator's ``classes_`` and its ``negative_class`` parameter when it has one,
    so a model, its reports and the command line agree on which column is malignant.
    """
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return resolve_class_roles(
        np.asarray(final.classes_), negative_class=getattr(final, "negative_class", None)
    )


def _subtype_key(label: Any) -> str | None:
    # "Phyllodes tumor", "phyllodes-tumor" and "phyllodes_tumor" name the same subtype.
    if not isinstance(label, str):
        return None
    return label.strip().lower().replace(" ", "_").replace("-", "_")


def _plain(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def resolve_negative_classes(
    classes: Any, negative_classes: Any = None, *, negative_class: Any = None
) -> tuple[Any, ...]:
    """The negative SET of ``classes``: the classes of benign tissue, in the order of ``classes``.

    With the eight BreakHis subtypes the four benign ones are all negative: a benign image
    holds only benign tissue, and a tile of a malignant image that is not tumour is benign
    tissue of some benign subtype. The rule, in order:

    1. ``negative_classes`` decides (``negative_class``, if also given, must be one of them);
    2. ``negative_class`` alone gives ``(negative_class,)``;
    3. classes that are all BreakHis subtype names (:data:`BENIGN_SUBTYPES`,
       :data:`MALIGNANT_SUBTYPES`; any case, ``" "`` or ``"-"`` for ``"_"``) give their benign
       subtypes;
    4. otherwise ``(resolve_class_roles(classes).negative,)``: for two classes the set is the
       negative class, so every binary problem is unchanged.

    Integer subtype codes (``load_breakhis(target="subtype")`` gives 0-7) cannot be recognised:
    step 4 would call only the smallest negative, so pass ``negative_classes=[0, 1, 2, 3]``.

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        The classes, e.g. an estimator's ``classes_``; at least two.
    negative_classes : array-like of labels, default=None
        The negative set; non-empty, members of ``classes``, and not all of them (some class
        must be positive).
    negative_class : label, default=None
        A single negative class (the binary parameter of the estimators).

    Returns
    -------
    tuple
        The negative classes, in the order of ``classes``.

    Raises
    ------
    ValueError
        When a given class is not among ``classes``, the set is empty or holds every class,
        ``negative_class`` is not in ``negative_classes``, subtype names include no benign
        subtype, or :func:`resolve_class_roles` cannot tell.

    Examples
    --------
    >>> resolve_negative_classes(["adenosis", "ductal_carcinoma", "fibroadenoma"])
    ('adenosis', 'fibroadenoma')
    >>> resolve_negative_classes([0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3])
    (0, 1, 2, 3)
    >>> resolve_negative_classes(["benign", "malignant"])
    ('benign',)
    """
    classes = _as_classes(classes)
    if len(classes) < 2:
        raise ValueError(f"Class roles need at least two classes, got {classes.tolist()}.")
    if negative_classes is not None:
        if isinstance(negative_classes, (str, bytes)) or np.ndim(negative_classes) != 1:
            raise ValueError(
                f"negative_classes must be a list of class labels, got {negative_classes!r}; "
                "for a single class pass negative_class= (or a one-element list)."
            )
        wanted = [_check_member(classes, "negative_classes", c) for c in negative_classes]
        if not wanted:
            raise ValueError("negative_classes is empty; give at least one negative class.")
        if negative_class is not None and not any(negative_class == c for c in wanted):
            raise ValueError(
                f"negative_class={negative_class!r} is not one of "
                f"negative_classes={list(wanted)!r}."
            )
        chosen = np.isin(classes, np.asarray(wanted, dtype=classes.dtype))
    elif negative_class is not None:
        chosen = classes == _check_member(classes, "negative_class", negative_class)
    else:
        keys = [_subtype_key(c) for c in classes.tolist()]
        if all(k in BENIGN_SUBTYPES or k in MALIGNANT_SUBTYPES for k in keys):
            chosen = np.array([k in BENIGN_SUBTYPES for k in keys])
            if not chosen.any():
                raise ValueError(
                    f"The BreakHis subtypes {classes.tolist()} include no benign subtype, so "
                    "nothing is negative; pass negative_classes=."
                )
        else:
            chosen = classes == resolve_class_roles(classes).negative
    if chosen.all():
        raise ValueError(
            f"Every class of {classes.tolist()} is negative; at least one must be positive."
        )
    return tuple(_plain(c) for c in classes[chosen])
