"""
Emergence of knowledge points during training
=============================================

When does each layer learn its discriminative patterns? Save checkpoints
while a network trains, analyse the same images at every checkpoint, and
count the knowledge points of each layer against the training step. The
paper finds that the counts rise fast early in training, then plateau.

:func:`skvmf.analysis.analyze` does it all with ``checkpoints=``: the
features of every checkpoint are extracted, their sample projections are
fitted in one shared frame
(:meth:`~skvmf.projection.SampleProjector.fit_sequence`: warm start from the
previous checkpoints, orthogonal Procrustes onto the previous frame), every
checkpoint's layers are aligned and their knowledge points counted.
"""

import shutil
import tempfile

from skvmf.analysis import analyze
from skvmf.datasets import load_digits_images, subset_per_class
from skvmf.training import list_checkpoints, train_digits_classifier

# %%
# Train and save checkpoints
# --------------------------
# With a ``checkpoint_dir``, :func:`~skvmf.training.train_digits_classifier`
# saves the network at chosen optimizer steps. The default schedule
# (:func:`~skvmf.training.default_checkpoint_iterations`) is dense early, where
# most changes happen; here we keep five of its steps to stay quick: the
# untrained network, three early ones and the end of the six epochs
# (132 steps). Each checkpoint also records the test accuracy at that step.
checkpoint_dir = tempfile.mkdtemp(prefix="skvmf_checkpoints_")
model, training = train_digits_classifier(
    checkpoint_dir=checkpoint_dir,
    checkpoint_iterations=[0, 33, 50, 66, 132],
    random_state=0,
)
print(f"final test accuracy: {training.test_accuracy:.3f}")
for iteration, path in list_checkpoints(checkpoint_dir):
    print(f"  step {iteration:3d}: {path.name}")

# %%
# Analyse every checkpoint
# ------------------------
# Five test images per digit (50 in all) and two layers keep this example
# short. ``analyze`` aligns the final model and the five checkpoints: six
# networks, three repeats each, spread over two processes with ``n_jobs=2``.
# The estimators are fitted on half of the images and every count is
# measured on the other half.
data = subset_per_class(load_digits_images("test"), 5, random_state=0)
result = analyze(
    model,
    data,
    layers=["conv_33", "conv_53"],
    checkpoints=checkpoint_dir,
    n_jobs=2,
    random_state=0,
)
print(result.summary())

# %%
# Emergence curves
# ----------------
# Knowledge points per image (left) and reliable ones (right) of each layer
# at each checkpoint. The untrained network, and still the network a quarter
# into training, have no knowledge points at all: their soft labels at
# T = 4 are nearly flat, so every g is short and no region stands out. The
# points appear within a few dozen steps, as the accuracy on these images
# climbs past 85 %; the deep layer's points are mostly reliable, the middle
# layer's mostly not.
fig = result.plot_emergence()

# %%
# The table behind the curves is a list of plain records (one per
# checkpoint and layer), ready for pandas or a CSV file
# (:meth:`~skvmf.analysis.AnalysisResult.save`).
#
# The last checkpoint is the final network, yet its counts differ from the
# summary's main table: its sample projection was fitted in the shared
# sequence (warm-started from the previous checkpoints), the main one on its
# own, and the counts depend on the projection found. Compare checkpoints
# with each other, within one sequence.
for row in result.emergence:
    print(
        f"step {row['iteration']:3d}  {row['layer']}  accuracy {row['accuracy']:.2f}"
        f"  points {row['mean_count']:5.1f}  reliable {row['mean_reliable']:5.1f}"
    )

# %%
# The sample space over training
# ------------------------------
# The projected images and the category directions at every checkpoint, all
# in one coordinate system: at step 0 every image sits at the origin (the
# network is unsure of all of them); as the network learns, the images move
# out along their category's direction.
fig = result.plot_sample_evolution()

# %%
# The checkpoints were written to a temporary folder; remove it.
shutil.rmtree(checkpoint_dir)
