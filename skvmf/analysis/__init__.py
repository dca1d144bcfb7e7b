"""The whole analysis of the paper in one call: :func:`analyze`.

extract features -> project the sample features (g) -> align every layer's
regional features (h) -> count knowledge points per layer; optionally the
same over training checkpoints (emergence), under a PGD attack, and for
distilled students. The result holds the fitted estimators, per-layer tables
(plain records: JSON as is, CSV with :meth:`AnalysisResult.save`) and the
figures.

The public names live here; the private files, each one concept, from the
bottom of the imports up:

- ``_inputs``: images, labels, normalisation and the analysed networks
  (model, checkpoints, students);
- ``_result``: :class:`AnalysisResult`, its tables, summary and figures;
- ``_measures``: per-image measures of each repeat and their rows with
  intervals;
- ``_findings``: the paper's properties checked per run, and the loss
  diagnostics of every fitted stage;
- ``_parallel``: the fits fanned out over joblib processes or a Dask cluster;
- ``_studies``: emergence, students, the attack and faithfulness;
- ``_pipeline``: the plan, the named steps and :func:`analyze`.
"""

from ._pipeline import analyze
from ._result import AnalysisResult

__all__ = ["AnalysisResult", "analyze"]
