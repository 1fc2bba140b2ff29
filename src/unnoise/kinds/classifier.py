"""Noisy-input classifiers (``unnoise train-classifier``): used for classifier guidance, not sampled."""
from __future__ import annotations

from .. import guidance
from ..pipeline import Pipeline
from . import Kind, register


def load(path, config, device, ema=True, autoencoder=None):
    """A noisy-classifier run as a Pipeline that does not sample (``pipe.classifier`` guides other runs)."""
    clf, clf_config = guidance.load_classifier(path, device=device)
    return Pipeline(None, None, "classifier", tuple(clf.config.get("shape", ())), num_classes=clf.num_classes,
                    config=clf_config, source=path, classifier=clf)


register(Kind(name="classifier", what="a noisy-input classifier", load=load, denoiser=False,
              use="use it with 'unnoise sample --checkpoint RUN --classifier DIR'"))
