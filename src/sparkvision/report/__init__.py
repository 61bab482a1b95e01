"""The experiment report: ``analysis`` (rankings, comparisons, the written summary: plain data in,
text out), ``plots`` (matplotlib figures as PNG bytes) and ``render`` (``REPORT.md`` and a
self-contained ``report.html``, written atomically). Nothing here needs Spark."""
