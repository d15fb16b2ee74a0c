"""The verdict: a run's scores/ (and crops/ for the error thumbnails) -> summary.json, metrics.csv, figures/,
report.html and the console report, with no model and no Ray.

    scores.py   read every trial's scores into one validated table
    stats.py    every statistic: pure numpy/scipy, keyword-only options, explicit seeds, frozen results
    labels.py   the wording shared by console, HTML and figures (grains, numbers, header, captions, perturbation axes)
    answer.py   the answer first: each candidate's verdict (better / not shown / worse), its rank, the verdict block
    summary.py  scores -> one summary (metrics, tests against the baseline, robustness, warnings, the verdict block)
    figure_data.py  the figures' data from the same grouping (ROC, distributions, confusion, top errors)
    compare.py  two runs side by side (report --compare)
    tables.py   the summary's tables as text, for console.py and html.py
    console.py, html.py, plots.py   draw; compute nothing
    report.py   collect once, summarise, write every output, render

Imports point one way (labels <- answer <- summary <- tables <- console/html, summary <- figure_data <- plots,
figure_data <- compare; report on top). Nothing here
imports Ray, TensorFlow, Keras, torch or scikit-learn, not even inside a function (tests/test_report.py walks them).
"""
