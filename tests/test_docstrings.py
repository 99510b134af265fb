"""Every public name (``repgraph.__all__``) keeps a complete numpydoc docstring, so the rule cannot
silently erode: ``Parameters`` naming each argument of the signature (and no other), ``Returns``
for functions (``Yields`` for the generator behind a context manager), ``Examples`` with doctest lines (they run as doctests: setup.cfg passes
``--doctest-modules`` over ``repgraph/``) and ``References``, except for the utilities listed in
``NO_REFERENCES``."""
from __future__ import annotations

import inspect
import re

import pytest

import repgraph

# Utilities with neither a paper nor a convention worth citing; their docstrings may omit References.
NO_REFERENCES = {
    "count_params_flops",  # multiply-accumulates of conv/linear layers (its Notes compare Torch-Pruning's counter)
    "evaluate",  # top-1 accuracy
    "open_store",  # an activation store as dask arrays (repgraph.distributed)
    "parallel",  # the Dask client of a with block (repgraph.distributed)
}

# An entry of a Parameters section: "name : type", "X, Y : type", "**kwargs" (at the section's indentation).
_ENTRY = re.compile(r"^(\*{0,2}\w+(?:, \*{0,2}\w+)*)(?: : .*)?$")


def sections(doc: str) -> dict[str, str]:
    """numpydoc sections of a (dedented) docstring: a header line underlined by as many dashes."""
    lines = doc.splitlines()
    found: dict[str, list[str]] = {}
    current = None
    i = 0
    while i < len(lines):
        line = lines[i]
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        if line and not line[0].isspace() and underline == "-" * len(line) and line.isalpha():
            current = line
            found[current] = []
            i += 2
            continue
        if current is not None:
            found[current].append(line)
        i += 1
    return {name: "\n".join(body) for name, body in found.items()}


def documented_parameters(body: str) -> set[str]:
    names = set()
    for line in body.splitlines():
        match = _ENTRY.match(line)
        if match:
            names.update(part.strip().lstrip("*") for part in match.group(1).split(","))
    return names


def test_sections_parser_reads_numpydoc():
    doc = inspect.cleandoc('''Summary.

        Parameters
        ----------
        X, Y : array
            Two arrays.
        k : int
        **kwargs
            Passed on.

        Returns
        -------
        float
        ''')
    found = sections(doc)
    assert set(found) == {"Parameters", "Returns"}
    assert documented_parameters(found["Parameters"]) == {"X", "Y", "k", "kwargs"}
    assert "Parameters" not in sections("Summary mentioning Parameters and Returns in prose.")


def test_allow_list_names_public_objects():
    assert NO_REFERENCES <= set(repgraph.__all__)


def docstring_problems(name: str, obj) -> list[str]:
    """What the docstring of public object ``obj`` (named ``name``) lacks; empty when complete."""
    doc = inspect.getdoc(obj) or ""
    found = sections(doc)
    params = list(inspect.signature(obj).parameters)
    problems = []
    if params:
        if "Parameters" not in found:
            problems.append("no Parameters section")
        else:
            documented = documented_parameters(found["Parameters"])
            missing = [p for p in params if p not in documented]
            stale = sorted(documented - set(params))
            if missing:
                problems.append(f"Parameters does not document {missing}")
            if stale:
                problems.append(f"Parameters documents {stale}, which the signature lacks")
    if not inspect.isclass(obj) and "Returns" not in found and "Yields" not in found:
        problems.append("no Returns section")
    if ">>>" not in found.get("Examples", ""):
        problems.append("no Examples section with doctest lines")
    if name not in NO_REFERENCES and not found.get("References", "").strip():
        problems.append("no References section (add one, or list the name in NO_REFERENCES with a reason)")
    return problems


def test_incomplete_docstrings_are_caught():
    def bare(x, *, k=3):
        """Only a summary that mentions Parameters, Returns, Examples and References in prose."""

    def stale(x):
        """Summary.

        Parameters
        ----------
        y : int
            A renamed argument.

        Returns
        -------
        int

        References
        ----------
        Someone, 2020.

        Examples
        --------
        Prose only, no doctest.
        """

    class Bare:
        """A class; its constructor takes ``a``."""

        def __init__(self, a):
            self.a = a

    assert docstring_problems("bare", bare) == ["no Parameters section", "no Returns section",
                                                "no Examples section with doctest lines",
                                                "no References section (add one, or list the name in "
                                                "NO_REFERENCES with a reason)"]
    assert docstring_problems("stale", stale) == ["Parameters does not document ['x']",
                                                  "Parameters documents ['y'], which the signature lacks",
                                                  "no Examples section with doctest lines"]
    assert docstring_problems("evaluate", bare)[-1] == "no Examples section with doctest lines"  # allow-listed
    assert docstring_problems("Bare", Bare)[0] == "no Parameters section"
    assert "no Returns section" not in docstring_problems("Bare", Bare)


@pytest.mark.parametrize("name", repgraph.__all__)
def test_public_docstring_is_complete(name):
    problems = docstring_problems(name, getattr(repgraph, name))
    assert not problems, f"repgraph.{name}: " + "; ".join(problems)
