"""
Pipelines, grid search and persistence
======================================

Every step of the analysis is a scikit-learn estimator, so the whole method
is a :class:`~sklearn.pipeline.Pipeline`: images in, a knowledge-point vote
out. That buys the rest of scikit-learn for free: ``score`` on held-out
images, :class:`~sklearn.model_selection.GridSearchCV` over the settings of
any step, and persistence with joblib.

Two habits keep it fast:

* run the network once: ``TorchFeatureExtractor.fit_transform`` returns a
  :class:`~skvmf.features.FeatureSet` that indexes by image like an array,
  so cross-validation splits it without touching the network again;
* cache the expensive steps: with ``Pipeline(memory=...)`` the fitted
  projector and aligner of each fold are stored, and a grid over the
  counter's parameters refits only the counter for each candidate.

To keep this tutorial short, the aligner runs with small settings (one
layer, 8 epochs, 10 importance-weight steps, 30 candidate images); the
defaults are 20, 20 and 100.
"""

import shutil
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from skvmf.alignment import RegionalAligner
from skvmf.datasets import load_digits_images, subset_per_class
from skvmf.extraction import TorchFeatureExtractor
from skvmf.knowledge import KnowledgePointCounter
from skvmf.projection import SampleProjector
from skvmf.training import train_digits_classifier

# %%
# A network and two sets of images
# --------------------------------
# The digits VGG-16 (about twenty seconds of training), and 10 test images
# per digit, split into 60 images to fit the analysis on and 40 to score it.
model, training = train_digits_classifier(random_state=0)
data = subset_per_class(load_digits_images("test"), 10, random_state=0)
X, y = data.images.numpy(), data.targets.numpy()
X_fit, X_new, y_fit, y_new = train_test_split(
    X, y, test_size=40, stratify=y, random_state=0
)

small_aligner = {
    "layers": ["conv_53"],
    "max_epochs": 8,
    "weight_steps": 10,
    "n_candidates": 30,
    "random_state": 0,
}

# %%
# The whole method as one Pipeline
# --------------------------------
# ``fit`` runs the network, learns M, learns Lambda and fits the counter;
# ``score`` runs the same steps' ``transform`` on new images and returns the
# accuracy of their knowledge-point vote at conv_53 (an image without any
# knowledge point counts as wrong).
pipe = Pipeline(
    [
        ("extract", TorchFeatureExtractor(model, layers=["conv_53"])),
        ("project", SampleProjector(random_state=0)),
        ("align", RegionalAligner(**small_aligner)),
        ("count", KnowledgePointCounter(tau=0.4)),
    ]
)
pipe.fit(X_fit, y_fit)
print(f"vote accuracy on 40 new images: {pipe.score(X_new, y_new):.3f}")

# %%
# The steps stay reachable: ``pipe[:-1]`` is the pipeline without its
# counter, and turns images into a FeatureSet with ``g`` and ``h``. On the
# new images, the knowledge points are almost all reliable, but many images
# have none at tau = 0.4, and those count as wrong in the vote.
new_features = pipe[:-1].transform(X_new)
row = pipe[-1].count(new_features, y_new)[0]
covered = pipe[-1].masks(new_features)[0].any(axis=1).mean()
print(
    f"{row['layer']}: {row['mean_count']:.1f} knowledge points per image, "
    f"reliable ratio {row['reliable_ratio']:.2f}, "
    f"images with at least one: {covered:.2f}"
)

# %%
# Persistence
# -----------
# The fitted pipeline, network included, goes to disk with joblib and comes
# back giving the same predictions.
path = Path(tempfile.mkdtemp()) / "knowledge_points.joblib"
joblib.dump(pipe, path)
restored = joblib.load(path)
same = np.array_equal(restored.predict(X_new), pipe.predict(X_new))
print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, same predictions: {same}")

# %%
# Extract once, search the grid
# -----------------------------
# The network pass is the same for every candidate, so it moves out of the
# pipeline: one FeatureSet of all 100 images. The remaining pipeline starts
# at the projector, and its ``memory`` caches what the projector and the
# aligner return on each training fold. The grid covers the counter's
# threshold tau and the noise level sigma of its revised kappa(l); each
# candidate is scored by the held-out vote accuracy of 3-fold
# cross-validation.
features = TorchFeatureExtractor(model, layers=["conv_53"]).fit_transform(X)
print(features)

cache = tempfile.mkdtemp(prefix="skvmf_cache_")
analysis = Pipeline(
    [
        ("sampleprojector", SampleProjector(random_state=0)),
        ("regionalaligner", RegionalAligner(**small_aligner)),
        ("knowledgepointcounter", KnowledgePointCounter()),
    ],
    memory=cache,
)
grid = {
    "knowledgepointcounter__tau": [0.05, 0.2, 0.3, 0.4, 0.6],
    "knowledgepointcounter__sigma": [0.5, 1.0, 2.0],
}
search = GridSearchCV(analysis, grid, cv=3)
start = time.perf_counter()
search.fit(features, y)
print(f"15 candidates x 3 folds in {time.perf_counter() - start:.1f} s")
print("best:", search.best_params_, f"vote accuracy {search.best_score_:.3f}")

# %%
# The cache at work: the first candidate fitted the projector and the
# aligner on each fold; every later candidate found them in the cache and
# fitted only the counter.
fit_times = search.cv_results_["mean_fit_time"]
print(f"mean fit time, first candidate: {fit_times[0]:.2f} s")
print(f"mean fit time, the 14 others:   {fit_times[1:].mean():.3f} s")

# %%
# The table of every candidate, best first.
results = search.cv_results_
order = np.argsort(results["rank_test_score"], kind="stable")
print(" tau   sigma  vote accuracy")
for i in order:
    params = results["params"][i]
    print(
        f"{params['knowledgepointcounter__tau']:4.2f}  "
        f"{params['knowledgepointcounter__sigma']:5.1f}  "
        f"{results['mean_test_score'][i]:.3f} +- {results['std_test_score'][i]:.3f}"
    )

# %%
# With tau = 0.05, below 1/C, every region is a knowledge point and the vote
# is the plain average of the regions' posteriors; on these digits the deep
# layer's regions average to the right digit, and no threshold does better.
# Higher thresholds leave more images without any knowledge point, and a
# larger sigma lowers kappa(l) at every strength (kappa(l) ~ l^2 / sigma^2
# for strong regions), which flattens the posteriors: with sigma = 1 at
# tau = 0.6, or sigma = 2 at tau >= 0.3, no image keeps a single point and
# the score drops to 0. A threshold does not make the vote better here; what
# it buys is a short list of the regions that carry the evidence.

# %%
# The saved pipeline and the cache live in temporary folders; remove them.
shutil.rmtree(path.parent)
shutil.rmtree(cache)
