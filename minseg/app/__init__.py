"""The application layer: training loop, run settings, the model/dataset/loss registry, plots and the CLI.

It imports every layer below it; nothing below imports it.
"""
