"""The diagnosis as a person reads it: ``report.json`` (everything, machine-readable), ``report.html`` (one
self-contained page: warnings first, then thresholds, bands, figures, data checks, words, feature importance)
and a short summary on stdout."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence


def plain(value: Any) -> Any:
    """JSON-safe: NaN becomes null and infinities the strings "inf" / "-inf" (JSON has neither)."""
    if isinstance(value, float):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return value


def write_json(report: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(plain(report), indent=2, ensure_ascii=False) + "\n")


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf (nothing flagged)" if value > 0 else "-inf"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _highlight(words: Sequence[Sequence[Any]]) -> str:
    """Words coloured by attribution: orange toward class 1, blue toward class 0."""
    peak = max((abs(a) for _, a in words), default=0.0) or 1.0
    spans = []
    for word, score in words:
        alpha = min(1.0, abs(score) / peak)
        rgb = "221,132,82" if score > 0 else "76,114,176"
        style = f"background: rgba({rgb},{alpha:.2f})"
        spans.append(f'<span style="{style}" title="{score:+.3f}">{html.escape(word)}</span>')
    return " ".join(spans)


def write_html(report: Mapping[str, Any], figures: Mapping[str, Path], path: Path) -> None:
    auc = report["auc"]
    parts = [f"<h1>Diagnosis: {html.escape(report['task'])}</h1>",
             f"<p>{report['examples']:,} evaluation examples ({html.escape(report['source'].get('eval', ''))}); "
             f"positive class: {html.escape(report['positive'])}. AUC <b>{auc['auc']:.4f}</b> "
             f"({auc['confidence']:.0%} bootstrap CI {auc['low']:.4f}-{auc['high']:.4f}, {auc['resamples']} resamples, "
             f"seed {auc['seed']}); ECE {report['calibration']['ece']:.4f}; average precision "
             f"{report['curves']['average_precision']:.4f}; {report['middle_share']:.1%} of the scores lie between "
             f"{report['config']['middle'][0]:g} and {report['config']['middle'][1]:g}.</p>", "<h2>Warnings</h2>"]
    parts += [f'<div class="warn"><b>{html.escape(w["kind"])}</b>: {html.escape(w["message"])}</div>'
              for w in report["warnings"]] or ["<p>None.</p>"]
    rows = [(name, r["rule"], _num(r["threshold"]), _num(r["tpr"]), _num(r["fpr"]), _num(r["precision"]),
             _num(r["per_100k"]["flagged"], 0), _num(r["per_100k"]["true_positives"], 0),
             _num(r["per_100k"]["false_positives"], 0), _num(r["per_100k"]["missed_positives"], 0))
            for name, r in report["thresholds"].items()]
    prevalence = next(iter(report["thresholds"].values()))["per_100k"]["prevalence"]
    parts += [f"<h2>Thresholds</h2><p>Per 100,000 events at a positive share of {prevalence:.2%}.</p>",
              _table(["threshold", "rule", "score >=", "TPR", "FPR", "precision", "flagged /100k", "caught /100k",
                      "false alarms /100k", "missed /100k"], rows),
              "<h2>Outcome bands</h2>",
              _table(["band", "score >=", "from", "examples", "of positives", "of negatives", "events /100k",
                      "precision", "note"],
                     [(b["band"], _num(b["threshold"]), b["from"] or "", b["examples"], _num(b["share_of_positives"]),
                       _num(b["share_of_negatives"]), _num(b["per_100k"]["events"], 0), _num(b["precision"]),
                       b["note"]) for b in report["bands"]]),
              "<h2>Figures</h2>"]
    for name, png in figures.items():
        data = base64.b64encode(Path(png).read_bytes()).decode()
        parts.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
    parts.append(_data_section(report["data"]) if report.get("data") else "")
    parts.append(_attribution_section(report["attribution"]) if report.get("attribution") else "")
    parts.append(_importance_section(report["importance"]) if report.get("importance") else "")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px}img{max-width:540px;"
             "margin:4px}.warn{background:#fde2e1;border-left:4px solid #c44e52;padding:6px;margin:4px 0}")
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>diagnose {html.escape(report['task'])}"
                    f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def _data_section(data: Mapping[str, Any]) -> str:
    balance, near = data["class_balance"], data["near_duplicates"]
    parts = ["<h2>Data checks</h2>",
             f"<p>{balance['train_examples']:,} training and {balance['eval_examples']:,} evaluation examples; "
             f"class 1 is {balance['train_positive_share']:.1%} of training and "
             f"{balance['eval_positive_share']:.1%} of evaluation. "
             f"Length in words ranks the labels with AUC {_num(data['length']['train']['auc'], 3)} (train), "
             f"{_num(data['length']['eval']['auc'], 3)} (evaluation).</p>",
             f"<h3>Exact duplicates (normalised): {len(data['exact_duplicates'])}</h3>",
             _table(["eval #", "text", "eval label", "train copies", "train labels"],
                    [(d["eval_index"], d["text"], d["eval_label"], d["train_copies"], d["train_labels"])
                     for d in data["exact_duplicates"][:50]]),
             f"<h3>Near duplicates (cosine >= {near['threshold']:g}, {near['compared_train']:,} training texts "
             f"compared): {len(near['pairs'])}</h3>",
             _table(["eval #", "text", "closest training text", "cosine"],
                    [(p["eval_index"], p["text"], p["train_text"], _num(p["cosine"], 3))
                     for p in (near["pairs"][:50] or near["closest"])]),
             "" if near["pairs"] else "<p>None reaches the threshold; the closest pairs are listed.</p>",
             "<h3>Single-token shortcuts</h3>",
             _table(["token", "balanced accuracy (train)", "favours", "in class 1 (train)", "in class 0 (train)",
                     "balanced accuracy (eval)"],
                    [(t["token"], _num(t["balanced_accuracy"], 3), t["favours"], _num(t["train"]["in_class_1"], 3),
                      _num(t["train"]["in_class_0"], 3), _num(t["eval"]["balanced_accuracy"], 3))
                     for t in data["token_shortcuts"]])]
    return "".join(parts)


def _attribution_section(attribution: Mapping[str, Any]) -> str:
    parts = [f"<h2>Words that move the score (integrated gradients, {attribution['examples']} evaluation examples, "
             f"{attribution['steps']} steps)</h2>"]
    for side in ("toward_1", "toward_0"):
        parts.append(f"<h3>{side.replace('_', ' class ')}</h3>")
        parts.append(_table(["word", "mean", "count", "total"],
                            [(r["word"], _num(r["mean"], 3), r["count"], _num(r["total"], 3))
                             for r in attribution["top"][side]]))
    parts.append("<h3>Examples, largest errors first</h3>")
    parts += [f"<p>label {e['label']}, score {e['score']:.3f}: {_highlight(e['words'])}</p>"
              for e in attribution["shown"]]
    return "".join(parts)


def _importance_section(importance: Mapping[str, Any]) -> str:
    return "".join([
        f"<h2>Feature importance (permutation, {importance['repeats']} shuffles each, seed {importance['seed']})</h2>",
        f"<p>AUC lost when one feature is shuffled across the inputs, from {importance['baseline_auc']:.4f}; "
        "near zero: the model does not use it (or a correlated feature stands in for it).</p>",
        _table(["feature", "mean AUC drop", "std", "AUC when shuffled"],
               [(r["feature"], _num(r["mean_drop"]), _num(r["std_drop"]),
                 ", ".join(f"{a:.4f}" for a in r["aucs"])) for r in importance["rows"]])])


def summary(report: Mapping[str, Any]) -> str:
    """The few lines a person reads in the terminal."""
    auc = report["auc"]
    lines = [f"diagnose {report['task']}: {report['examples']} evaluation examples; AUC {auc['auc']:.4f} "
             f"({auc['confidence']:.0%} CI {auc['low']:.4f}-{auc['high']:.4f}); ECE {report['calibration']['ece']:.4f}"]
    for name, row in report["thresholds"].items():
        lines.append(f"  {name:<14} threshold {_num(row['threshold'])}  TPR {row['tpr']:.4f}  FPR {row['fpr']:.4f}  "
                     f"precision {_num(row['precision'])}")
    data = report.get("data")
    if data:
        near = data["near_duplicates"]
        closest = f"; closest other pair cosine {near['closest'][0]['cosine']:.3f}" if near["closest"] else ""
        lines.append(f"  duplicates train/eval: {len(data['exact_duplicates'])} exact, {len(near['pairs'])} near "
                     f"(cosine >= {near['threshold']:g}, {near['compared_train']:,} training texts{closest})")
    importance = report.get("importance")
    if importance:
        ranked = ", ".join(f"{r['feature']} {r['mean_drop']:+.4f} ± {r['std_drop']:.4f}"
                           for r in importance["rows"][:10])
        more = f" (+{len(importance['rows']) - 10} more)" if len(importance["rows"]) > 10 else ""
        lines.append(f"  importance (AUC drop when shuffled, {importance['repeats']} repeats): {ranked}{more}")
    lines += [f"  WARNING {w['kind']}: {w['message']}" for w in report["warnings"]] or ["  no warnings"]
    lines.append(f"  report: {report['files']['html']}")
    return "\n".join(lines)
