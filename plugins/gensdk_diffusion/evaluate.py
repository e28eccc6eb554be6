"""Judging generated digits with a classifier trained on real ones.

The judge is scikit-learn's RBF support-vector classifier on the 8x8 digits (about 99% accurate on held-out real
digits). Generated digits are as large as the model was trained (16x16 by default), so they are brought back
to 8x8 by area averaging; the judge is trained on real digits that made the same round trip (bilinear upscale,
then area downscale), so it sees real and generated digits through the same lens.

    judge = DigitJudge.fit(size=16)
    labels = judge.predict(pixels)            # (N, 1, 16, 16) in [0, 1] -> (N,) digit labels
    judge.heldout_accuracy                    # on real digits it was not trained on
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DigitAttribute", "DigitJudge", "class_shares"]

DIGIT_SIDE = 8
HELDOUT_SHARE = 0.25


@dataclass
class DigitJudge:
    classifier: Any
    size: int
    heldout_accuracy: float

    @classmethod
    def fit(cls, size: int = 16, seed: int = 0) -> DigitJudge:
        from sklearn.model_selection import train_test_split
        from sklearn.svm import SVC

        from gensdk.images import load_digits
        from gensdk_diffusion.train import prepare_images

        data = load_digits()
        seen = (prepare_images(data.pixels, size, levels=1) + 1) / 2  # the training images the model saw
        features = _features(seen)
        labels = data.labels.numpy()
        x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=HELDOUT_SHARE,
                                                            random_state=seed, stratify=labels)
        classifier = SVC(C=10, gamma="scale").fit(x_train, y_train)
        heldout = float((classifier.predict(x_test) == y_test).mean())
        return cls(classifier.fit(features, labels), size, heldout)

    def predict(self, pixels: Any) -> np.ndarray:
        """Digit labels of (N, 1, H, W) images in [0, 1]."""
        return self.classifier.predict(_features(pixels))


class DigitAttribute:
    """The digit as an attribute, for gensdk_fairness's `fairness-image` policy on digits of any size:
    `options = {"classifier": "gensdk_diffusion.evaluate:DigitAttribute"}`. A logistic regression on the same
    8x8 area averages as DigitJudge: it gives probabilities, which the policy needs."""

    attribute = "digit"
    classes = [str(d) for d in range(10)]

    def __init__(self, size: int = 16) -> None:
        from sklearn.linear_model import LogisticRegression

        from gensdk.images import load_digits
        from gensdk_diffusion.train import prepare_images

        data = load_digits()
        seen = (prepare_images(data.pixels, size, levels=1) + 1) / 2
        self.model = LogisticRegression(max_iter=2000).fit(_features(seen) / 16, data.labels.numpy())

    def predict_proba(self, pixels: Any) -> np.ndarray:
        import torch

        return self.model.predict_proba(_features(torch.as_tensor(pixels)) / 16)


def _features(pixels: Any) -> np.ndarray:
    """8x8 area averages on scikit-learn's 0..16 scale, flattened."""
    import torch.nn.functional as F

    small = F.adaptive_avg_pool2d(pixels.detach().float().cpu(), DIGIT_SIDE)
    return (small.flatten(1) * 16).numpy()


def class_shares(labels: np.ndarray, classes: int = 10) -> list[float]:
    return (np.bincount(labels, minlength=classes) / max(len(labels), 1)).tolist()
