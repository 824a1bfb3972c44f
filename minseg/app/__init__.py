"""The application layer: training loop (``train``), run settings and folders (``runs``), the model/dataset/loss
registry, what each command does (``commands``), plots (``viz``) and the option parser (``cli``).

It imports every layer below it; nothing below imports it.
"""
