"""A self-contained HTML report (figures embedded as PNG data, tables, parameters, versions) that
opens in a browser with no server."""
from __future__ import annotations

import base64
import html
import io
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:0.85em}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
img{{max-width:100%}}h2{{border-bottom:1px solid #ddd}}code{{background:#f4f4f4}}</style></head>
<body><h1>{title}</h1>
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
}});
</script></body></html>
"""


def figure_html(fig, alt: str) -> str:
    """A matplotlib figure as an embedded PNG <img>."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def versions() -> dict:
    import gudhi
    import igraph
    import networkx
    import numpy
    import scipy
    import torch

    from . import __version__

    return {"repgraph": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "networkx": networkx.__version__, "igraph": igraph.__version__, "gudhi": gudhi.__version__}


def write_report(path, title: str, sections, parameters: dict) -> Path:
    """Write ``sections`` — (heading, item) pairs where an item is a matplotlib Figure, a DataFrame
    or text — with the ``parameters`` and the library versions to ``path``, through a temporary
    file so an interrupted write never leaves a half page."""
    parts = []
    for heading, item in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(item, pd.DataFrame):
            parts.append(item.to_html(float_format=lambda v: f"{v:.4f}", border=0))
        elif hasattr(item, "savefig"):
            parts.append(figure_html(item, heading))
        else:
            parts.append(f"<p>{html.escape(str(item))}</p>")
    params = pd.DataFrame({"value": [str(v) for v in parameters.values()]}, index=list(parameters))
    vers = pd.DataFrame({"version": list(versions().values())}, index=list(versions()))
    parts += ["<h2>Parameters</h2>", params.to_html(border=0), "<h2>Versions</h2>", vers.to_html(border=0),
              f"<p>Written {datetime.now(timezone.utc).isoformat(timespec='seconds')}.</p>"]
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(PAGE.format(title=html.escape(title), body="\n".join(parts)), encoding="utf-8")
    os.replace(tmp, path)
    return path
