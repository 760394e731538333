"""``rgi-anomalib report``: one Markdown report over several draws of a benchmark config.

Reads the ``results.json`` of run directories that ran one config on different draws (datasets
built with different seeds, e.g. ``--datasets elpv_s0`` ... of configs/benchmark/elpv_table2.yaml)
and writes one Markdown report (``tables.report``):

- per method and category, the mean over draws ± the sample standard deviation of every Dice
  definition, pixel AUROC, AUPRO, the reconstruction gap and the costs;
- λ chosen three ways for RGI and R-RGI: the paper's values (the ``rgi`` / ``rrgi`` rows), without
  labels (``*_auto`` rows, the deployable M̂ > 0 rule) and by labelled cross-validation over the
  ``<method>_lam<value>`` rows: each category's λ is the one with the best oracle Dice on one draw,
  scored on the other draws (every draw takes a turn; the test draw never picks its own λ);
- the restoration under the defect, where the runs measured it (synthetic draws with their
  clean twins, a model that restores): absorption RMS_M(G(ẑ) − clean) / RMS_M(x − clean) (0: the
  surface restored, 1: the defect copied), the in-mask PSNR against the clean twin and the
  in-mask residual over the normal images' 99th percentile (rgi_anomalib/benchmark/metrics.py);
  rows of older runs lack them and read "–";
- the oracle Dice of flagging every pixel, per category (what a constant map scores; a method near
  it has found nothing), from the masks each draw wrote (``datasets/<draw>/ground_truth``);
- the paper's claims (section 4.2), each decided on paired draws (``verdicts``): "holds" when the
  method is ahead in every draw by more than the draws' spread of the difference (and by at least
  ``MIN_EFFECT`` Dice), "does not hold" when it is behind that clearly, "cannot tell" otherwise,
  and also when neither method is ahead, by the same rule, of flagging every pixel.

    rgi-anomalib report runs/benchmark/elpv_table2_cpu/elpv_s* --out docs/results/table2.md
"""
