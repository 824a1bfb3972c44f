"""Root pytest configuration: notebooks executed by pytest (nbmake) run in quick mode.

Each notebook reads ``MINSEG_QUICK`` and shrinks its sizes and iterations when it is "1", so the whole
set runs in a few minutes in CI; run them in Jupyter without it to get the full figures.
"""

import os

os.environ.setdefault("MINSEG_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
