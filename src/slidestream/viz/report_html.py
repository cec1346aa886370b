"""The report page: plain HTML + CSS from a :class:`~slidestream.viz.report.RunReport`.

No template engine and nothing fetched: every string from a slide, a path or a reason goes
through :func:`html.escape`, and the only script sorts the summary tables.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

from slidestream.viz.report_assets import CSS, JS
from slidestream.viz.report_model import (
    STATUS_RANK,
    Figure,
    RunReport,
    SlideReport,
    StageConfig,
    StageRecord,
    stage_order,
)

STATUS_TEXT = {"damaged": "damaged", "ok": "ok", "skipped": "skipped", "failed": "failed", "no record": "no record"}


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def anchor(slide_id: str) -> str:
    return "slide-" + "".join(c if c.isalnum() or c in "-_" else f"_{ord(c):x}_" for c in slide_id)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def num(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1):
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def badge(status: str) -> str:
    cls = status.replace(" ", "-")
    return f'<span class="badge {cls}">{e(STATUS_TEXT.get(status, status))}</span>'


# Manifest detail keys as a person reads them; unknown keys are shown with underscores as spaces.
DETAIL_LABELS = {
    "tissue_pieces": "tissue pieces", "tissue_area_mm2": "tissue mm²", "tissue_fraction": "tissue share",
    "pen_fraction": "ink share", "working_mpp": "detected at µm/px", "working_size": "working image px",
    "small_pieces_dropped": "small pieces dropped", "read_level": "read level", "n_tiles": "tiles",
    "embedded_tiles": "tiles embedded", "dim": "dimensions", "locked_by": "locked by",
}


def detail_text(details: dict[str, Any]) -> str:
    return ", ".join(f"{DETAIL_LABELS.get(k, k.replace('_', ' '))} {value_text(v)}" for k, v in details.items())


def value_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


# ---------------------------------------------------------------------------------- run level
def _cards(run: RunReport) -> str:
    done = [r for s in run.slides for r in s.records if r.status == "ok"]
    total = sum(s.seconds for s in run.slides)
    work = sum(r.seconds for r in done)
    slides_done = sum(1 for s in run.slides if any(r.status == "ok" for r in s.records))
    rate = f"{slides_done / work * 3600:,.0f} slides/h" if work > 0 and slides_done else "no work done"
    cards = [
        ("Slides", str(len(run.slides)), ""),
        ("OK", str(run.count("ok")), "ok"),
        ("Skipped", str(run.count("skipped")), "skipped"),
        ("Failed", str(run.count("failed")), "failed" if run.count("failed") else ""),
        ("Processing time", duration(total), "sum of per-slide times over all stages"),
        ("Throughput", rate, f"{plural(slides_done, 'slide')} with work done, in {duration(work)}"),
    ]
    if run.count("damaged"):
        cards.insert(4, ("Damaged", str(run.count("damaged")), "failed"))
    if run.count("no record"):
        cards.insert(4, ("No record", str(run.count("no record")), "stores not in manifest.csv"))
    out = []
    for title, value, note in cards:
        cls = note if note in ("ok", "skipped", "failed") else ""
        hint = "" if cls or not note else f'<div class="hint">{e(note)}</div>'
        out.append(f'<div class="card {cls}"><div class="label">{e(title)}</div><div class="value">{e(value)}</div>{hint}</div>')
    return f'<div class="cards">{"".join(out)}</div>'


def _failure_box(run: RunReport) -> str:
    failed = [s for s in run.slides if s.status == "failed"]
    if not failed:
        return ""
    items = "".join(f'<li><a href="#{anchor(s.slide_id)}">{e(s.slide_id)}</a> '
                    f'<span class="muted">({e(", ".join(r.stage for r in s.failures))})</span>: {e(s.reason)}</li>'
                    for s in failed)
    return f'<div class="alert failed" id="failures"><strong>{plural(len(failed), "slide")} failed</strong><ul>{items}</ul></div>'


def _summary_table(run: RunReport) -> str:
    heads = [("Slide", ""), ("Status", ""), ("mpp (µm/px)", "num"), ("Tissue (mm²)", "num"), ("Tiles", "num"),
             ("Selected", "num"), ("Features", ""), ("Time (all stages)", "num"), ("Reason / note", "")]
    head = "".join(f'<th class="{cls}"><button type="button">{e(h)}</button></th>' for h, cls in heads)
    rows = []
    for s in run.slides:
        summary = (s.tissue or {}).get("summary", {})
        area = summary.get("tissue_area_mm2")
        selected = sum(int(a.get("n_selected", 0)) for a in s.selections.values())
        sel_text = ", ".join(f"{k} {a.get('n_selected')}" for k, a in sorted(s.selections.items()))
        mpp = s.mpp
        mpp_note = _mpp_kind(s)
        cells = [
            (f'<a href="#{anchor(s.slide_id)}">{e(s.slide_id)}</a>', s.slide_id.lower(), ""),
            (badge(s.status), str(STATUS_RANK.get(s.status, 9)), ""),
            (("" if mpp is None else f"{mpp:g}") + (f' <span class="tag">{e(mpp_note)}</span>' if mpp_note else ""),
             "" if mpp is None else f"{mpp}", "num"),
            (num(area, 4), "" if area is None else f"{area}", "num"),
            (num(s.n_tiles), "" if s.n_tiles is None else str(s.n_tiles), "num"),
            (e(sel_text), str(selected) if s.selections else "", "num"),
            (e(", ".join(sorted(s.features))), ",".join(sorted(s.features)), ""),
            (duration(s.seconds) if s.records else "", f"{s.seconds:.3f}" if s.records else "", "num"),
            (f'<span class="reason" title="{e(s.reason)}">{e(s.reason)}</span>', s.reason.lower(), ""),
        ]
        tds = "".join(f'<td class="{cls}" data-sort="{e(key)}">{html}</td>' for html, key, cls in cells)
        rows.append(f'<tr class="{s.status.replace(" ", "-")}">{tds}</tr>')
    return (f'<table class="sortable summary" id="summary-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            '<p class="muted small">Click a column title to sort; click a slide to jump to its pictures. '
            'Status is the worst stage outcome of the latest batch of each stage: <em>skipped</em> means the work '
            'was already done by an earlier batch.</p>')


def _mpp_kind(s: SlideReport) -> str:
    source = str(s.info.get("mpp_source") or "")
    if s.mpp is None:
        return ""
    if source.startswith("default"):
        return "assumed"
    if source == "override":
        return "override"
    return ""


def _time_table(run: RunReport) -> str:

    stages: dict[str, list[StageRecord]] = {}
    for s in run.slides:
        for r in s.records:
            stages.setdefault(r.stage, []).append(r)
    if not stages:
        return '<p class="muted">No timings: manifest.csv is missing or empty.</p>'
    rows = []
    for stage in sorted(stages, key=stage_order):
        recs = stages[stage]
        ok = [r for r in recs if r.status == "ok"]
        work = sum(r.seconds for r in ok)
        tiles = sum(int(r.details.get("features", r.details.get("tiles", 0)) or 0) for r in ok)
        per_slide = work / len(ok) if ok else None
        rate = f"{len(ok) / work * 3600:,.0f}" if work > 0 else ""
        tile_rate = f"{tiles / work:,.1f}" if work > 0 and tiles else ""
        finished = max((r.finished for r in recs), default="")
        counts = {k: sum(1 for r in recs if r.status == k) for k in ("ok", "skipped", "failed")}
        rows.append(
            f'<tr><td>{e(stage)}</td><td class="num">{counts["ok"]}</td><td class="num">{counts["skipped"]}</td>'
            f'<td class="num">{counts["failed"]}</td><td class="num" data-sort="{work:.3f}">{duration(work)}</td>'
            f'<td class="num" data-sort="{per_slide or 0:.3f}">{duration(per_slide)}</td><td class="num">{rate}</td>'
            f'<td class="num">{tile_rate}</td><td>{e(finished)}</td></tr>')
    head = "".join(f'<th class="{c}"><button type="button">{h}</button></th>' for h, c in (
        ("Stage", ""), ("OK", "num"), ("Skipped", "num"), ("Failed", "num"), ("Time (ok slides)", "num"),
        ("Per ok slide", "num"), ("Slides / hour", "num"), ("Tiles / s", "num"), ("Batch finished", "")))
    return (f'<table class="sortable" id="time-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            '<p class="muted small">Times are per-slide wall times recorded in manifest.csv by the latest batch of each '
            'stage. A stage run by another (tiles run tissue detection first) includes that work.</p>')


def _config(run: RunReport) -> str:
    if not run.config:
        return '<p class="muted">No stage parameters: no slide store was written.</p>'
    n_stores = sum(1 for s in run.slides if s.store is not None)
    blocks = []
    for cfg in run.config:
        blocks.append(_config_block(cfg, n_stores))
    batches = "".join(f"<li><code>{e(rid)}</code> {e(stage)} <span class='muted'>finished {e(fin)}</span></li>"
                      for rid, stage, fin in run.run_ids)
    batches_html = f'<h3>Batches in manifest.csv</h3><ul class="batches">{batches}</ul>' if batches else ""
    versions = sorted({str(s.store_version) for s in run.slides if s.store is not None})
    run_config = (f'<details open><summary>Config of the latest <code>slidestream run</code> '
                  f'(<code>run-config.yaml</code>)</summary><pre class="run-config">{e(run.run_config)}</pre></details>'
                  if run.run_config else "")
    return (f'{run_config}<div class="config-grid">{"".join(blocks)}</div>{batches_html}'
            f'<p class="muted small">Stores written by slidestream {e(", ".join(versions) or "?")}. Slide mpp is a '
            'per-slide value: see each slide.</p>')


def _config_block(cfg: StageConfig, n_stores: int) -> str:
    parts = [f'<div class="config"><h3>{e(cfg.stage)}</h3>']
    for params, ids in cfg.variants:
        if len(ids) == n_stores and len(cfg.variants) == 1:
            who = "the one slide with a store" if n_stores == 1 else f"all {n_stores} slides with a store"
        else:
            who = f"{plural(len(ids), 'slide')}: {', '.join(ids)}"
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(value_text(v))}</td></tr>" for k, v in params.items())
        parts.append(f'<p class="muted small">{e(who)}</p><table class="kv">{rows}</table>')
    if len(cfg.variants) > 1:
        parts.insert(1, f'<p class="warn-inline">{len(cfg.variants)} different settings in one run folder</p>')
    parts.append("</div>")
    return "".join(parts)


# ---------------------------------------------------------------------------------- per slide
def _facts(s: SlideReport) -> str:
    rows: list[tuple[str, str]] = []
    info = s.info
    if s.path:
        rows.append(("File", f'<code class="path">{e(s.path)}</code>'))
    if info:
        w, h = info.get("width"), info.get("height")
        size = f"{num(w)} × {num(h)} px"
        if s.mpp and w and h:
            size += f" ({w * info['mpp_x'] / 1000:.2f} × {h * (info.get('mpp_y') or info['mpp_x']) / 1000:.2f} mm)"
        rows.append(("Dimensions", e(size)))
        downs = info.get("level_downsamples") or []
        rows.append(("Levels", e(f"{info.get('level_count')} (downsamples {', '.join(f'{d:g}' for d in downs)})")))
        source = str(info.get("mpp_source") or "")
        if s.mpp is None:
            rows.append(("mpp", '<span class="warn-inline">unknown</span>'))
        else:
            kind = {"assumed": "assumed (the file has none)", "override": "override (imposed)"}.get(_mpp_kind(s), "from the file")
            mpp = f"{s.mpp:g}" if info.get("mpp_y") in (None, s.mpp) else f"{s.mpp:g} × {info['mpp_y']:g}"
            cls = "warn-inline" if _mpp_kind(s) else ""
            origin = f' <span class="muted">({e(source)})</span>' if source and not _mpp_kind(s) else ""
            rows.append(("mpp", f'{e(mpp)} µm/px — <span class="{cls}">{e(kind)}</span>{origin}'))
        if info.get("objective_power"):
            rows.append(("Objective", e(f"{info['objective_power']:g}×")))
        rows.append(("Reader", e(f"{info.get('backend')}" + (f", vendor {info['vendor']}" if info.get("vendor") else ""))))
    if s.tissue is not None:
        t = s.tissue.get("summary", {})
        text = f"{t.get('tissue_area_mm2', 0):.4g} mm² in {t.get('tissue_pieces', 0)} piece(s)"
        if t.get("tissue_fraction") is not None:
            text += f", {100 * t['tissue_fraction']:.1f} % of the slide"
        rows.append(("Tissue", e(text)))
        if t.get("pen_fraction") is not None:
            pen = t["pen_fraction"]
            share = "less than 0.1" if 0 < pen < 0.0005 else f"{100 * pen:.1f}"
            rows.append(("Pen marks", e(f"{share} % of the slide, excluded" if pen > 0 else "none found")))
    if s.tiles is not None:
        a = s.tiles
        rows.append(("Tiles", e(f"{num(s.n_tiles)} kept: {a.get('tile_size_px')} px at {a.get('target_mpp'):g} µm/px, "
                               f"≥ {100 * float(a.get('min_tissue') or 0):.0f} % tissue, read from level {a.get('read_level')}")))
    for name, a in sorted(s.selections.items()):
        share = f" ({100 * a['n_selected'] / a['n_tiles']:.0f} %)" if a.get("n_tiles") else ""
        seed = (a.get("params") or {}).get("seed")
        rows.append((f"Selection {name}", e(f"{a.get('n_selected')} of {a.get('n_tiles')} tiles{share}"
                                            + (f", seed {seed}" if seed is not None else ""))))
    for name, a in sorted(s.features.items()):
        sha = str(a.get("weights_sha256") or "")
        bits = [f"{num(a.get('n_rows'))} × {a.get('dim')}", str(a.get("dtype") or ""),
                f"weights {sha[:12]}" if sha else "", f"selection {a['selection']}" if a.get("selection") else "all tiles",
                "RANDOM WEIGHTS" if a.get("random_init") else ""]
        rows.append((f"Features {name}", e(", ".join(b for b in bits if b))))
    for name, a in sorted(s.embeddings.items()):
        rows.append((f"Slide embedding {name}", e(f"shape {a.get('shape')}" + (f", from {a['encoder']}" if a.get("encoder") else ""))))
    for name, a in sorted(s.tile_scores.items()):
        rows.append((f"Tile scores {name}", e(f"rows aligned with {a.get('rows', 'tiles')}")))
    body = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv facts">{body}</table>'


def _stages(s: SlideReport) -> str:
    if not s.records:
        return '<p class="muted small">No record in manifest.csv.</p>'
    rows = []
    for r in s.records:
        details = detail_text(r.details)
        note = e(r.reason) + (f' <span class="muted">[{e(r.error_type)}]</span>' if r.error_type else "")
        rows.append(f'<tr class="{e(r.status)}"><td>{e(r.stage)}</td><td>{badge(r.status)}</td>'
                    f'<td class="num">{duration(r.seconds)}</td><td>{note}</td><td class="muted">{e(details)}</td></tr>')
    return ('<table class="stages"><thead><tr><th>Stage</th><th>Status</th><th class="num">Time</th>'
            f'<th>Reason / note</th><th>Details</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _figure(f: Figure, main: bool = False) -> str:
    src = quote(f.file)
    legend = "".join(f'<span class="key"><span class="swatch" style="background:{e(c)}"></span>{e(label)}</span>'
                     for c, label in f.legend)
    bar = ""
    if f.colorbar is not None:
        stops, lo, hi = f.colorbar
        bar = (f'<div class="colorbar"><span>{e(lo)}</span><span class="bar" style="background:linear-gradient(to right,'
               f'{",".join(stops)})"></span><span>{e(hi)}</span></div>')
    return (f'<figure class="{"main" if main else "extra"}"><figcaption class="title">{e(f.title)}</figcaption>'
            f'<a href="{src}" target="_blank"><img src="{src}" alt="{e(f.title)}" loading="lazy"></a>'
            f'<div class="legend">{legend}</div>{bar}<figcaption>{e(f.caption)}</figcaption></figure>')


def _slide_section(s: SlideReport) -> str:
    warnings = ""
    if s.warnings:
        cls = "failed" if s.status == "failed" else "warn"
        warnings = f'<div class="alert {cls}"><ul>{"".join(f"<li>{e(w)}</li>" for w in s.warnings)}</ul></div>'
    why = f": {s.no_picture}" if s.no_picture else ""
    main = _figure(s.figures[0], main=True) if s.figures else f'<div class="noimage">No picture{e(why)}</div>'
    extras = "".join(_figure(f) for f in s.figures[1:])
    extras_html = f'<h4>Maps and other pictures</h4><div class="gallery">{extras}</div>' if extras else ""
    return (f'<article class="slide {s.status.replace(" ", "-")}" id="{anchor(s.slide_id)}" data-slide-id="{e(s.slide_id)}">'
            f'<header><h3>{e(s.slide_id)}</h3>{badge(s.status)}<a class="top" href="#summary">back to summary</a></header>'
            f'{warnings}<div class="slide-body"><div class="figures">{main}</div>'
            f'<div class="facts-col">{_facts(s)}<h4>Stages</h4>{_stages(s)}</div></div>{extras_html}</article>')


# ---------------------------------------------------------------------------------- page
def render(run: RunReport) -> str:
    problems = "".join(f'<div class="alert warn">{e(p)}</div>' for p in run.problems)
    slides = "".join(_slide_section(s) for s in run.slides) or '<p class="muted">No slides.</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="slidestream {e(run.version)}">
<link rel="icon" href="data:,">
<title>slidestream report: {e(run.out.name)}</title>
<style>{CSS}</style>
</head>
<body>
<header class="page">
<h1>slidestream run report</h1>
<p class="muted">Run folder <code>{e(run.out.resolve())}</code> · generated {e(run.generated)} · slidestream {e(run.version)}</p>
<nav><a href="#summary">Summary</a><a href="#time">Time</a><a href="#config">Configuration</a><a href="#slides">Slides ({len(run.slides)})</a></nav>
</header>
<main>
<section id="summary"><h2>Summary</h2>{problems}{_cards(run)}{_failure_box(run)}{_summary_table(run)}</section>
<section id="time"><h2>Time and throughput</h2>{_time_table(run)}</section>
<section id="config"><h2>Configuration</h2>{_config(run)}</section>
<section id="slides"><h2>Slides</h2>{slides}</section>
</main>
<script>{JS}</script>
</body>
</html>
"""
