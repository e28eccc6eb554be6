"""Attribute distributions of generated images against a target distribution.

An attribute classifier is any object with `attribute` (what it predicts), `classes` (its labels) and
`predict_proba(pixels) -> (N, K)` for float pixels (N, C, H, W) in [0, 1]. It is pluggable three ways:

* a built-in name: ``"digits"``, a logistic regression trained on scikit-learn's real 8x8 digits
  (`gensdk.images.load_digits`), predicting the digit; it takes 8x8 greyscale images;
* ``"package.module:attribute"``: a classifier object, a class or a factory called with no argument;
* from Python, the object itself.

`audit_images` labels each image with the classifier's most likely class and compares the class shares with
the target (``"uniform"``, or {class: share}): Wilson intervals per share, the total variation distance with a
bootstrap interval, and a chi-square goodness-of-fit p-value. The check: total variation <= `max_tvd`.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from gensdk.errors import ConfigError, DataError, GensdkError
from gensdk_fairness._deps import require
from gensdk_fairness.checks import Check, at_most, json_safe, overall_verdict
from gensdk_fairness.stats import DEFAULT_BOOTSTRAP, interval, share_intervals

__all__ = ["AttributeClassifier", "ClassifierError", "DigitsClassifier", "ImageAudit", "audit_images",
           "resolve_classifier", "target_shares"]

# Expected images per class below which chi-square's approximation is poor: the p-value is then left out.
MIN_EXPECTED_PER_CLASS = 5


class ClassifierError(GensdkError):
    """The attribute classifier failed or returned something unusable; the audit fails closed."""


@runtime_checkable
class AttributeClassifier(Protocol):
    attribute: str
    classes: list[str]

    def predict_proba(self, pixels: Any) -> Any: ...


class DigitsClassifier:
    """Multinomial logistic regression on the 64 pixels of scikit-learn's 1,797 real digits (about 97%
    held-out accuracy): the judge of which digits an image model generates."""

    attribute = "digit"
    classes = [str(i) for i in range(10)]

    def __init__(self, seed: int = 0, train_rows: Sequence[int] | None = None) -> None:
        """`train_rows`: indices of the digits to train on (default: all); the tests hold some out."""
        LogisticRegression = require("sklearn.linear_model", "The digits classifier").LogisticRegression
        require("torch", "The digits classifier (it reads gensdk.images.load_digits)")
        from gensdk.images import load_digits

        data = load_digits()
        rows = slice(None) if train_rows is None else np.asarray(train_rows)
        self.model = LogisticRegression(max_iter=2000, C=0.5, random_state=seed)
        self.model.fit(data.pixels.flatten(1).numpy()[rows], data.labels.numpy()[rows])

    def predict_proba(self, pixels: Any) -> np.ndarray:
        array = _as_numpy(pixels)
        if array.shape[1:] != (1, 8, 8):
            raise ClassifierError(f"the digits classifier takes 8x8 greyscale images (N, 1, 8, 8); got {tuple(array.shape)}")
        return self.model.predict_proba(array.reshape(len(array), 64))


BUILTIN_CLASSIFIERS: dict[str, type] = {"digits": DigitsClassifier}


def resolve_classifier(spec: Any) -> AttributeClassifier:
    """A classifier from a built-in name, a "module:attribute" path, or the object itself."""
    if not isinstance(spec, str):
        return _checked(spec, repr(spec))
    if spec in BUILTIN_CLASSIFIERS:
        return _builtin(spec)
    if ":" not in spec:
        raise ConfigError(f"unknown attribute classifier {spec!r}: built in are {', '.join(BUILTIN_CLASSIFIERS)}; "
                          "others are named 'package.module:attribute'")
    module_name, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"attribute classifier {spec!r} cannot be imported: {exc}") from None
    made = target() if isinstance(target, type) or (callable(target) and not hasattr(target, "predict_proba")) else target
    return _checked(made, spec)


@functools.lru_cache(maxsize=None)
def _builtin(name: str) -> AttributeClassifier:
    """Trained once per process: the built-ins are deterministic, and training takes a second or two."""
    return BUILTIN_CLASSIFIERS[name]()


def _checked(classifier: Any, spec: str) -> AttributeClassifier:
    ok = (isinstance(getattr(classifier, "attribute", None), str) and callable(getattr(classifier, "predict_proba", None))
          and list(getattr(classifier, "classes", []) or []))
    if not ok:
        raise ConfigError(f"attribute classifier {spec} needs `attribute` (str), `classes` (labels) and `predict_proba(pixels)`")
    return classifier


def _as_numpy(pixels: Any) -> np.ndarray:
    if hasattr(pixels, "detach"):
        pixels = pixels.detach().float().cpu().numpy()
    return np.asarray(pixels, dtype=np.float32)


def predict_labels(classifier: AttributeClassifier, pixels: Any) -> np.ndarray:
    """Class index per image; anything wrong with the classifier's answer is a ClassifierError."""
    count = len(pixels)
    try:
        proba = np.asarray(classifier.predict_proba(pixels), dtype=np.float64)
    except ClassifierError:
        raise
    except Exception as exc:
        raise ClassifierError(f"attribute classifier {classifier.attribute!r} failed: {type(exc).__name__}: {exc}") from exc
    if proba.shape != (count, len(classifier.classes)):
        raise ClassifierError(f"attribute classifier {classifier.attribute!r} returned shape {proba.shape} for {count} "
                              f"images and {len(classifier.classes)} classes")
    if not np.isfinite(proba).all():
        raise ClassifierError(f"attribute classifier {classifier.attribute!r} returned non-finite probabilities")
    return proba.argmax(axis=1)


def target_shares(target: str | Mapping[str, float], classes: Sequence[str]) -> np.ndarray:
    """'uniform', or {class: share} over the classifier's classes (shares must sum to 1; absent classes get 0)."""
    if isinstance(target, str):
        if target != "uniform":
            raise ConfigError(f"unknown target distribution {target!r}: give 'uniform' or a mapping class -> share")
        return np.full(len(classes), 1 / len(classes))
    unknown = sorted(set(map(str, target)) - set(classes))
    if unknown:
        raise ConfigError(f"target distribution names class(es) {unknown} the classifier does not know ({list(classes)})")
    shares = np.array([float(target.get(c, 0.0)) for c in classes])
    if (shares < 0).any() or abs(shares.sum() - 1) > 1e-6:
        raise ConfigError(f"target shares must be >= 0 and sum to 1 (they sum to {shares.sum():g})")
    return shares


@dataclass
class ImageAudit:
    attribute: str
    classes: list[str]
    counts: list[int]
    target: list[float]
    share_ci: list[list[float]]
    total_variation: float
    total_variation_ci: list[float] | None
    chi2_p_value: float | None
    checks: list[Check]
    notes: list[str]
    settings: dict[str, Any]
    sources: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    kind: str = "image"

    @property
    def verdict(self) -> str:
        return overall_verdict(self.checks)

    def to_dict(self) -> dict[str, Any]:
        total = sum(self.counts)
        by_class = {c: {"count": k, "share": k / total, "target": t, "ci": ci}
                    for c, k, t, ci in zip(self.classes, self.counts, self.target, self.share_ci)}
        return json_safe({"kind": self.kind, "verdict": self.verdict, "attribute": self.attribute, "images": total,
                          "by_class": by_class, "total_variation": self.total_variation,
                          "total_variation_ci": self.total_variation_ci, "chi2_p_value": self.chi2_p_value,
                          "checks": [c.to_dict() for c in self.checks], "notes": self.notes,
                          "settings": self.settings, "sources": self.sources})


def audit_images(pixels: Any, classifier: Any = "digits", *, target: str | Mapping[str, float] = "uniform",
                 max_tvd: float = 0.1, n_boot: int = DEFAULT_BOOTSTRAP, level: float = 0.95, seed: int = 0,
                 sources: Mapping[str, Any] | None = None) -> ImageAudit:
    """Distribution of the classifier's labels over `pixels` (N, C, H, W) against `target`."""
    judge = resolve_classifier(classifier)
    if len(pixels) == 0:
        raise DataError("no images to audit")
    expected = target_shares(target, judge.classes)
    labels = predict_labels(judge, pixels)
    counts = np.bincount(labels, minlength=len(judge.classes))
    return _audit_counts(judge, counts, expected, max_tvd, n_boot, level, seed, dict(sources or {}))


def _audit_counts(judge: AttributeClassifier, counts: np.ndarray, expected: np.ndarray, max_tvd: float, n_boot: int,
                  level: float, seed: int, sources: dict[str, Any]) -> ImageAudit:
    stats = require("scipy.stats", "The chi-square test of attribute shares")
    total = int(counts.sum())
    shares = counts / total
    tvd = float(0.5 * np.abs(shares - expected).sum())
    draws = np.random.default_rng(seed).multinomial(total, shares, n_boot) / total
    tvd_ci = interval(0.5 * np.abs(draws - expected).sum(axis=1), level)
    notes: list[str] = []
    p_value = None
    support = expected > 0
    if (counts[~support] > 0).any():
        notes.append("images were labelled with classes the target gives no share: chi-square not computed")
    elif (expected[support] * total < MIN_EXPECTED_PER_CLASS).any():
        notes.append(f"fewer than {MIN_EXPECTED_PER_CLASS} images expected in some class: too few for a chi-square p-value")
    else:
        p_value = float(stats.chisquare(counts[support], expected[support] * total).pvalue)
    check = at_most("attribute_total_variation", tvd, max_tvd,
                    f"total variation between the {judge.attribute} shares and the target", tvd_ci)
    settings = {"classifier": type(judge).__name__, "bootstrap": n_boot, "level": level, "seed": seed, "max_tvd": max_tvd}
    return ImageAudit(judge.attribute, list(map(str, judge.classes)), counts.tolist(), expected.tolist(),
                      share_intervals(counts, level), tvd, tvd_ci, p_value, [check], notes, settings, sources)
