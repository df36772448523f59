"""The run report: ``curves.png`` (training and validation loss) and a self-contained ``report.html``.

The HTML page needs nothing beside itself (styles inline, the curves embedded as a base64 PNG),
so it can be mailed, attached to a CI job, or opened from the run folder. It shows the before /
baseline / after table, the forgetting and overfitting verdicts, the gate, the curves, sample
generations and the resolved recipe. A run without an eval split or without a loss history gets a
report that says so instead of failing.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .layout import CURVES, REPORT
from .rundir import write_text_atomic


def loss_series(history: Sequence[Mapping[str, float]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(step, training loss) and (step, validation loss) points from a run's history."""
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    valid = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    return train, valid


def curves_png(history: Sequence[Mapping[str, float]]) -> bytes | None:
    """PNG bytes of the loss curves, or None when the history holds no loss."""
    train, valid = loss_series(history)
    if not train and not valid:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train), label="training loss", color="#1f77b4", marker="." if len(train) < 30 else None)
    if valid:
        axes.plot(*zip(*valid), label="validation loss", color="#d62728", marker="o")
    stop = next((h for h in history if "early_stopped" in h), None)
    if stop is not None:
        axes.axvline(stop["best_step"], color="#2ca02c", linestyle="--", label=f"best (step {int(stop['best_step'])})")
        axes.axvline(stop["step"], color="#7f7f7f", linestyle=":", label=f"early stop (step {int(stop['step'])})")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(
    run_dir: Path, metrics: Mapping[str, Any], history: Sequence[Mapping[str, float]],
    recipe: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write ``curves.png`` (when there is a loss history) and ``report.html``; return the HTML's path."""
    png = curves_png(history)
    if png is not None:
        tmp = run_dir / ".curves.png.tmp"
        tmp.write_bytes(png)
        tmp.replace(run_dir / CURVES)
    path = run_dir / REPORT
    write_text_atomic(path, render_html(metrics, png, recipe, samples, title=run_dir.name))
    return path


def score_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(evaluator.figure, before, baseline, after)`` for every figure any phase produced."""
    rows = []
    seen: list[str] = []
    for phase in ("before", "baseline", "after"):
        for name, figures in (metrics.get(phase) or {}).items():
            for key in figures:
                label = f"{name}.{key}"
                if label not in seen:
                    seen.append(label)
    for label in seen:
        name, _, key = label.rpartition(".")
        values = [((metrics.get(phase) or {}).get(name) or {}).get(key) for phase in ("before", "baseline", "after")]
        rows.append((label, *values))
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#17803d;font-weight:600}.worse{color:#b42318;font-weight:600}
.flag{background:#fdecea;border-left:4px solid #b42318;padding:.5rem .8rem}.ok{background:#ecfdf3;border-left:4px solid #17803d;padding:.5rem .8rem}
.note{color:#666}pre{background:#f7f7f7;padding:.8rem;overflow:auto;font-size:.85rem}
img{max-width:100%;border:1px solid #eee}td.text{font-family:ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-all;max-width:320px}
"""

LOWER_IS_BETTER = ("loss", "perplexity")


def _change(label: str, before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "&ndash;"
    delta = after - before
    if delta == 0:
        return "0"
    lower = label.rsplit(".", 1)[-1] in LOWER_IS_BETTER or label.endswith("loss")
    good = delta < 0 if lower else delta > 0
    return f'<span class="{"better" if good else "worse"}">{delta:+.4g}</span>'


def render_html(
    metrics: Mapping[str, Any], png: bytes | None, recipe: Mapping[str, Any],
    samples: Sequence[Mapping[str, Any]], title: str = "run",
) -> str:
    """The report page as one HTML string."""
    from .recipe.toml_io import dumps

    shots = metrics.get("baseline_shots")
    has_baseline = bool(metrics.get("baseline"))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>ftx report: {html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>ftx report: {html.escape(title)}</h1>"]
    model = (recipe.get("model") or {}).get("name", "?")
    method = (recipe.get("method") or {}).get("use", "?")
    objective = (recipe.get("objective") or {}).get("use", "?")
    train = metrics.get("train") or {}
    data = metrics.get("data") or {}
    parts.append(f"<p class='note'>model <b>{html.escape(str(model))}</b>, method <b>{html.escape(str(method))}</b>, "
                 f"objective <b>{html.escape(str(objective))}</b>; {data.get('train', '?')} training and "
                 f"{data.get('eval', '?')} held-out examples; {int(train.get('steps', 0))} steps in "
                 f"{train.get('seconds', 0):.0f}s</p>")

    parts.append("<h2>Scores on the held-out split</h2>")
    rows = score_rows(metrics)
    if rows:
        head = "<tr><th>metric</th><th>before (base model)</th>"
        if has_baseline:
            head += f"<th>baseline (base model, {shots}-shot prompt)</th>"
        head += "<th>after (fine-tuned)</th><th>change</th></tr>"
        body = []
        for label, before, baseline, after in rows:
            cells = f"<td>{html.escape(label)}</td><td class='num'>{_fmt(before)}</td>"
            if has_baseline:
                cells += f"<td class='num'>{_fmt(baseline)}</td>"
            cells += f"<td class='num'>{_fmt(after)}</td><td class='num'>{_change(label, before, after)}</td>"
            body.append(f"<tr>{cells}</tr>")
        parts.append(f"<table id='scores'>{head}{''.join(body)}</table>")
        if has_baseline:
            parts.append("<p class='note'>The baseline prompts the base model with training examples as earlier turns: "
                         "fine-tuning was worth it where <i>after</i> beats it.</p>")
    else:
        parts.append("<p class='note'>No scores: the recipe has no evaluators or no held-out split (data.eval).</p>")
    for name, reason in (metrics.get("skipped") or {}).items():
        parts.append(f"<p class='note'>{html.escape(name)} skipped: {html.escape(reason)}</p>")

    forgetting = metrics.get("forgetting")
    if forgetting and forgetting.get("skipped"):
        parts.append("<h2>Forgetting check</h2>")
        parts.append(f"<p class='note'>Skipped: {html.escape(str(forgetting['skipped']))}.</p>")
    elif forgetting:
        parts.append("<h2>Forgetting check</h2>")
        box = "flag" if forgetting.get("flagged") else "ok"
        verdict = "forgetting flagged" if forgetting.get("flagged") else "no forgetting past the threshold"
        parts.append(
            f"<div class='{box}'>General-text perplexity {forgetting['before_perplexity']:.4g} &rarr; "
            f"{forgetting['after_perplexity']:.4g} ({forgetting['increase']:+.1%}; threshold "
            f"{forgetting['threshold']:.0%}): <b>{verdict}</b>.<br><span class='note'>{html.escape(str(forgetting['text']))}, "
            f"{forgetting['passages']} passages</span></div>")

    gate = metrics.get("gate")
    if gate:
        parts.append("<h2>Gate</h2>")
        rows_html = "".join(
            f"<tr><td>{html.escape(c['metric'])}</td><td>{html.escape(c['condition'])}</td>"
            f"<td class='num'>{_fmt(c['value'])}</td><td class='{'better' if c['passed'] else 'worse'}'>"
            f"{'passed' if c['passed'] else 'FAILED'}</td></tr>" for c in gate["checks"])
        parts.append(f"<table id='gate'><tr><th>metric</th><th>required</th><th>value</th><th>result</th></tr>{rows_html}</table>")

    parts.append("<h2>Training and validation loss</h2>")
    if png is not None:
        parts.append(f"<img id='curves' alt='training and validation loss' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode('ascii')}'>")
    else:
        parts.append("<p class='note'>No loss history was recorded.</p>")
    watch = metrics.get("overfitting") or {}
    if watch.get("message"):
        parts.append(f"<div class='flag'>{html.escape(watch['message'])}</div>")
    elif watch.get("checked"):
        parts.append(f"<div class='ok'>No sign of overfitting: validation loss ended at {watch['final_eval_loss']:.4g} "
                     f"(best {watch['best_eval_loss']:.4g} at step {watch['best_eval_step']}).</div>")
    elif watch.get("reason"):
        parts.append(f"<p class='note'>Overfitting watch: {html.escape(watch['reason'])}.</p>")
    if "early_stopped_at_step" in watch:
        restored = "; the best weights were restored" if watch.get("restored_best") else ""
        parts.append(f"<p>Early stopping at step {watch['early_stopped_at_step']} (best at step {watch['best_step']}){restored}.</p>")

    if samples:
        parts.append("<h2>Sample generations</h2>")
        phases = [p for p in ("before", "baseline", "after") if any(p in s for s in samples)]
        head = "<tr><th>prompt</th><th>reference</th>" + "".join(f"<th>{p}</th>" for p in phases) + "</tr>"
        body = "".join(
            "<tr>" + f"<td class='text'>{html.escape(s['prompt'])}</td><td class='text'>{html.escape(s['reference'])}</td>"
            + "".join(f"<td class='text'>{html.escape(str(s.get(p, '')))}</td>" for p in phases) + "</tr>"
            for s in samples)
        parts.append(f"<table id='samples'>{head}{body}</table>")

    parts.append("<h2>Resolved recipe</h2>")
    parts.append(f"<pre>{html.escape(dumps(dict(recipe)))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
