"""The core: array backends (NumPy/CuPy), the random generator, the autograd engine, checkpoints and errors.

Nothing here knows about images or segmentation; every other layer builds on it.
"""
