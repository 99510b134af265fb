"""Collection rules for the doctests of ``repgraph/`` (setup.cfg runs them with the tests): the
examples of the optional plotly backend run where plotly is installed (the ``test`` extra)."""
import importlib.util

collect_ignore = [] if importlib.util.find_spec("plotly") else ["repgraph/plotting_interactive.py"]
