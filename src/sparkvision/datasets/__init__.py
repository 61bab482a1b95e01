"""Dataset sources: each turns some on-disk layout into rows of the image table (see table.py)."""
