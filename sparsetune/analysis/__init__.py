"""Analysis figures of the PST paper (Li et al. 2022, Sec. 4.4) from the exported models of completed runs.

- Fig. 4: the distribution of the kept (non-zero) weights of the target matrices, one series per run
  (kept_weights.py).
- Fig. 5: the similarity of the binary masks between runs, per target matrix against layer index
  (mask_similarity.py): 1 − Hamming distance / number of weights, as the paper defines it.

runs.py finds and checks the runs, weights.py reads their exported matrices one at a time, plots.py draws,
figures.py ties them together and writes the PNG / JSON / CSV files (scripts/analysis_figures.py is its CLI).
"""
from .figures import make_figures

__all__ = ["make_figures"]
