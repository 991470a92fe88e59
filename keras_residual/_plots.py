"""Matplotlib figures without pyplot: no global backend switch, shown inline by Jupyter."""

from __future__ import annotations


def new_figure(ncols: int = 1, *, width: float = 6.0, height: float = 4.0):
    """A `Figure` and its axes (one, or an array of `ncols`) in a row."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * ncols, height))
    return figure, figure.subplots(1, ncols)
