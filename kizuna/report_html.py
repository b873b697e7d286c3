"""One self-contained HTML page for an ``adapt`` (or ``hackathon``) run: nothing to serve.

Videos and images are embedded as base64 ``data:`` URIs, so the page can be mailed or attached
to a ticket. The videos stay as ``kizuna.video`` writes them, MP4/H.264 (yuv420p): Debian's
``chromium`` plays them (checked by tests/kizuna/test_report_html.py in headless Chromium); a
browser built without H.264 shows the page's "could not load" line under each video instead.

The page runs one small script: it records, for each ``<video>``, whether it loaded
(``loadeddata``) or failed (``error``) into ``<pre id="video-status">``, where a person sees a
failure and a headless test reads the result from the DOM.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png", ".jpg": "image/jpeg"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em; color: #222; }
h1 { margin-bottom: 0.2em; } .sub { color: #666; margin-top: 0; }
.big { font-size: 2.4em; font-weight: 600; } .ok { color: #18794e; } .bad { color: #b42318; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
.videos { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
video, img { max-width: 100%; border: 1px solid #ccc; } pre { background: #f6f6f6; padding: 1em;
overflow-x: auto; } #video-status { font-size: 0.8em; color: #666; }
"""

# For each <video>: {"id": ..., "ok": bool, "readyState": n, "error": code|null}, then the DOM.
VIDEO_CHECK_JS = """
(() => {
  const videos = [...document.querySelectorAll("video")];
  const status = {};
  const out = document.getElementById("video-status");
  const publish = () => {
    out.textContent = JSON.stringify({done: Object.keys(status).length === videos.length,
                                      videos: status});
  };
  videos.forEach((v) => {
    v.addEventListener("loadeddata", () => {
      status[v.id] = {ok: v.readyState >= 2, readyState: v.readyState, error: null};
      publish();
    });
    v.addEventListener("error", () => {
      status[v.id] = {ok: false, readyState: v.readyState, error: v.error && v.error.code};
      const note = document.getElementById(v.id + "-note");
      if (note) note.textContent = "could not load this video in this browser";
      publish();
    });
    v.load();
  });
  publish();
})();
"""


def data_uri(path: str | Path) -> str:
    """The file as a ``data:<mime>;base64,...`` URI (mime from the suffix)."""
    path = Path(path)
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: cannot embed a {path.suffix!r} file; use one of {sorted(MIME)}")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def png_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}"


def success_curve_png(
    points: Sequence[Mapping[str, Any]], target: float | None = None, title: str = ""
) -> bytes:
    """Success rate (with its 95 % CI) against training time, one point per evaluation.

    Each point: ``train_s``, ``success_rate``, ``ci95`` ([low, high]), ``episodes``.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend, works headless

    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax = fig.subplots()
    minutes = [p["train_s"] / 60 for p in points]
    rates = [p["success_rate"] for p in points]
    low = [max(0.0, p["success_rate"] - p["ci95"][0]) for p in points]
    high = [max(0.0, p["ci95"][1] - p["success_rate"]) for p in points]
    if points:
        ax.errorbar(minutes, rates, yerr=[low, high], marker="o", capsize=4, color="tab:green")
        for m, r, p in zip(minutes, rates, points, strict=True):
            ax.annotate(f"n={p['episodes']}", (m, r), textcoords="offset points", xytext=(4, 4))
    if target is not None:
        ax.axhline(target, color="tab:red", linestyle="--", label=f"target {target:.0%}")
        ax.legend(loc="lower right")
    ax.set_xlim(left=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("success rate (95 % CI)")
    ax.set_title(title or "success against training time")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _table(rows: Mapping[str, Any]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f"<table>{cells}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "—" if value is None else str(value)


def _videos(videos: Mapping[str, Sequence[str | Path]]) -> str:
    figures = []
    for kind, paths in videos.items():
        for i, path in enumerate(paths):
            vid = f"video-{kind}-{i}"
            figures.append(
                f'<figure><video id="{vid}" controls muted loop playsinline preload="auto" '
                f'src="{data_uri(path)}"></video><figcaption>{html.escape(kind)}: '
                f'{html.escape(Path(path).stem)} <span id="{vid}-note" class="bad"></span>'
                "</figcaption></figure>"
            )
    if not figures:
        return "<p>No videos were recorded.</p>"
    return f'<div class="videos">{"".join(figures)}</div>'


def render_page(
    title: str,
    headline: Mapping[str, Any],
    sections: Sequence[tuple[str, str]],
    videos: Mapping[str, Sequence[str | Path]],
) -> str:
    """The page: a headline (success, CI, target), free-form sections (raw HTML), the videos.

    ``headline``: ``success_rate``, ``successes``, ``episodes``, ``ci95``, optional ``target``.
    """
    rate, (low, high) = headline["success_rate"], headline["ci95"]
    target = headline.get("target")
    cls = "ok" if target is None or rate >= target else "bad"
    aim = f" (target {target:.0%})" if target is not None else ""
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">{html.escape(str(headline.get("subtitle", "")))}</p>',
        f'<p><span class="big {cls}">{rate:.0%}</span> success, '
        f"{headline['successes']} of {headline['episodes']} episodes; 95 % confidence interval "
        f"[{low:.0%}, {high:.0%}] (Wilson){html.escape(aim)}</p>",
        "<h2>Videos</h2>",
        _videos(videos),
        '<pre id="video-status">pending</pre>',
    ]
    body += [f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(body)
        + f"<script>{VIDEO_CHECK_JS}</script></body></html>\n"
    )


def adapt_report_html(summary: Mapping[str, Any], preview: Path | None = None) -> str:
    """The ``kizuna adapt`` report from its ``adapt.json`` summary (see ``kizuna.adapt``)."""
    final = summary["final"]
    probes = list(summary.get("probes", []))
    evaluations = [e for e in summary.get("evaluations", [final]) if e.get("train_s") is not None]
    points = sorted(probes + evaluations, key=lambda p: p["wall_s"])
    labels = {id(p): f"step {p['step']}" for p in probes}
    labels |= {id(e): f"step {e['step']} (evaluation)" for e in evaluations}
    target = summary.get("target")
    curve = success_curve_png(points, target, f"{summary['task']}: success vs training time")
    sections = [
        ("Success against training time", f'<img alt="success curve" src="{png_uri(curve)}">'),
        ("Run", _table(summary.get("run", {}))),
        ("Data", _table(summary.get("data", {}))),
        ("Training", _table(summary.get("training", {}))),
        ("Evaluations", _table({labels[id(p)]: _probe_line(p) for p in points})),
        ("Task spec", f"<pre>{html.escape(summary.get('spec_yaml', ''))}</pre>"),
    ]
    if preview is not None and preview.is_file():
        sections.insert(0, ("Scene preview", f'<img alt="scene" src="{data_uri(preview)}">'))
    headline = {**final, "target": target, "subtitle": summary.get("subtitle", "")}
    return render_page(f"kizuna adapt: {summary['task']}", headline, sections, final["videos"])


def _probe_line(p: Mapping[str, Any]) -> str:
    low, high = p["ci95"]
    return (
        f"{p['successes']}/{p['episodes']} ({p['success_rate']:.0%}, CI [{low:.2f}, "
        f"{high:.2f}]) after {p['train_s'] / 60:.1f} min training, {p['wall_s'] / 60:.1f} min "
        "wall clock"
    )


def write_page(path: str | Path, page: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
