"""Metrics over answer tables, and the base-vs-fine-tuned report (report.md, report.json, report.png).

An answer table is a list of rows, one per test item:

    {"id": "q-17", "question": "...", "reference": "...", "is_urgent": True, "answer": "..."}

    scored = [score_answer(row, cfg.filter) for row in rows]     # per-item checks
    summary = summarize(scored, ci_level=0.95)                   # rates with Wilson intervals
    worst = worst_cases(scored, 3)

Every function here is pure (no model, no files) except the writers at the bottom. The
format rules are the training data's own: the closing sentence, the urgent prefix, the
forbidden phrases, the dosage detector and the sentence splitter all come from stage 2
(`healthai.data.filtering`, `healthai.data.validation`), so "compliant" means the same thing at both ends.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from healthai.config.filtering import FilterConfig
from healthai.data.filtering import count_words, find_dosages, find_forbidden
from healthai.data.validation import split_sentences

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

METRICS: tuple[tuple[str, str], ...] = (
    ("closing_rate", "ends with the closing sentence"),
    ("urgent_recall", "urgent recall (prefix on urgent items)"),
    ("over_triage", "over-triage (prefix on non-urgent items)"),
    ("sentences_ok_rate", "1-5 sentences"),
    ("forbidden_rate", "forbidden phrase present"),
    ("dosage_leak_rate", "dosage leak"),
    ("similarity", "ROUGE-L F1 vs reference"),
)
"""(key, label) of the rates shown in the table and the bar chart; higher is better for the
first four and for similarity, lower is better for forbidden phrases and dosage leaks."""

LOWER_IS_BETTER = {"over_triage", "forbidden_rate", "dosage_leak_rate"}


# -- text measures -----------------------------------------------------------------------
def ends_with_closing(answer: str, closing: str) -> bool:
    """True when the answer ends exactly with the closing sentence (trailing whitespace aside)."""
    return bool(closing) and answer.rstrip().endswith(closing)


def starts_with_prefix(answer: str, prefix: str) -> bool:
    """True when the answer opens exactly with the urgent prefix (leading whitespace aside)."""
    return bool(prefix) and answer.lstrip().startswith(prefix)


def tokenize_words(text: str) -> list[str]:
    """Lower-case word tokens for the similarity score (punctuation dropped)."""
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)*len(b)), one row of memory)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on word tokens (Lin 2004, beta = 1): 0 = nothing in common, 1 = same words in the same order."""
    c, r = tokenize_words(candidate), tokenize_words(reference)
    if not c or not r:
        return 0.0
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


# -- statistics --------------------------------------------------------------------------
def z_for_level(level: float) -> float:
    """Two-sided normal quantile: 0.95 -> 1.96."""
    return statistics.NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (good at 0/n and n/n, unlike the normal one).

    n = 0 gives (0.0, 1.0): no evidence either way.
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be within 0..n={n}")
    z = z_for_level(level)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(k: int, n: int, level: float = 0.95) -> dict:
    """{"k", "n", "rate", "ci"}; rate is None when n = 0 (nothing to measure)."""
    lo, hi = wilson_interval(k, n, level)
    return {"k": k, "n": n, "rate": (k / n) if n else None, "ci": [lo, hi]}


# -- per item and per table --------------------------------------------------------------
def score_answer(row: dict, cfg: FilterConfig) -> dict:
    """The row plus every per-item check, using stage 2's own detectors and rules."""
    answer = (row.get("answer") or "").strip()
    sentences = split_sentences(answer)
    return {
        **row,
        "is_urgent": bool(row.get("is_urgent")),
        "closing": ends_with_closing(answer, cfg.closing_sentence),
        "prefix": starts_with_prefix(answer, cfg.urgent_prefix),
        "forbidden": find_forbidden(answer, cfg),
        "dosages": find_dosages(answer, cfg),
        "sentences": len(sentences),
        "sentences_ok": cfg.min_sentences <= len(sentences) <= cfg.max_sentences,
        "words": count_words(answer),
        "similarity": rouge_l(answer, row.get("reference") or "") if row.get("reference") else None,
    }


def confusion(scored: Iterable[dict]) -> dict:
    """Urgent (truth) vs prefix (what the model did): tp = urgent with prefix, fn = urgent missed,
    fp = non-urgent with prefix (over-triage), tn = non-urgent without."""
    table = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
    for s in scored:
        if s["is_urgent"]:
            table["tp" if s["prefix"] else "fn"] += 1
        else:
            table["fp" if s["prefix"] else "tn"] += 1
    return table


def summarize(scored: Sequence[dict], ci_level: float = 0.95) -> dict:
    """Rates over one model's scored answers; recall and over-triage with Wilson intervals."""
    n = len(scored)
    conf = confusion(scored)

    def share(key: str) -> float | None:
        return sum(1 for s in scored if s[key]) / n if n else None

    words = [s["words"] for s in scored]
    sims = [s["similarity"] for s in scored if s["similarity"] is not None]
    return {
        "n": n,
        "closing_rate": share("closing"),
        "urgent_recall": proportion(conf["tp"], conf["tp"] + conf["fn"], ci_level),
        "over_triage": proportion(conf["fp"], conf["fp"] + conf["tn"], ci_level),
        "sentences_ok_rate": share("sentences_ok"),
        "forbidden_rate": share("forbidden"),
        "dosage_leak_rate": share("dosages"),
        "mean_sentences": statistics.fmean(s["sentences"] for s in scored) if n else None,
        "mean_words": statistics.fmean(words) if n else None,
        "median_words": statistics.median(words) if n else None,
        "similarity": statistics.fmean(sims) if sims else None,
        "confusion": conf,
        "ci_level": ci_level,
    }


def metric_value(summary: dict, key: str) -> float | None:
    """A rate from a summary whether it is a plain number or a proportion dict."""
    value = summary.get(key)
    return value.get("rate") if isinstance(value, dict) else value


def badness(s: dict) -> tuple:
    """Sort key, worst first: a missed urgent item is the dangerous error, then leaks, then format."""
    return (
        -(s["is_urgent"] and not s["prefix"]),
        -len(s["dosages"]),
        -len(s["forbidden"]),
        -(not s["is_urgent"] and s["prefix"]),
        -(not s["closing"]),
        -(not s["sentences_ok"]),
        s["similarity"] if s["similarity"] is not None else 1.0,
    )


def problems(s: dict) -> list[str]:
    """Human-readable list of what is wrong with one scored answer."""
    out = []
    if s["is_urgent"] and not s["prefix"]:
        out.append("missed urgent prefix")
    if not s["is_urgent"] and s["prefix"]:
        out.append("over-triage")
    if s["dosages"]:
        out.append("dosage: " + ", ".join(s["dosages"]))
    if s["forbidden"]:
        out.append("forbidden: " + ", ".join(s["forbidden"]))
    if not s["closing"]:
        out.append("no closing sentence")
    if not s["sentences_ok"]:
        out.append(f"{s['sentences']} sentences")
    return out


def worst_cases(scored: Sequence[dict], n: int) -> list[dict]:
    """The n worst answers (see `badness`), each with its `problems`; stable for ties."""
    ranked = sorted(scored, key=badness)[:n]
    return [{**s, "problems": problems(s)} for s in ranked]


def compare(summaries: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """metric -> {model: value}, for the table and the plot."""
    return {key: {name: metric_value(s, key) for name, s in summaries.items()} for key, _ in METRICS}


# -- report --------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _prop_cell(p: dict) -> str:
    if p["rate"] is None:
        return "n/a (0 items)"
    return f"{_pct(p['rate'])} ({p['k']}/{p['n']}; CI {_pct(p['ci'][0])}–{_pct(p['ci'][1])})"


def _md_text(text: str) -> str:
    """One table-safe line: pipes escaped, newlines flattened."""
    return " ".join((text or "").split()).replace("|", "\\|")


def metrics_table(summaries: dict[str, dict]) -> str:
    """Markdown table: one row per metric, one column per model."""
    names = list(summaries)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in METRICS:
        cells = []
        for name in names:
            value = summaries[name].get(key)
            if isinstance(value, dict):
                cells.append(_prop_cell(value))
            elif key == "similarity":
                cells.append(_num(value, 3))
            else:
                cells.append(_pct(value))
        arrow = " (lower is better)" if key in LOWER_IS_BETTER else ""
        lines.append(f"| {label}{arrow} | " + " | ".join(cells) + " |")
    lines.append("| mean sentences | " + " | ".join(_num(summaries[n]["mean_sentences"]) for n in names) + " |")
    lines.append("| mean / median words | " + " | ".join(
        f"{_num(summaries[n]['mean_words'])} / {_num(summaries[n]['median_words'], 0)}" for n in names) + " |")
    lines.append("| items | " + " | ".join(str(summaries[n]["n"]) for n in names) + " |")
    return "\n".join(lines)


def confusion_table(summaries: dict[str, dict]) -> str:
    lines = ["| model | urgent + prefix | urgent, no prefix (missed) | non-urgent + prefix (over-triage) | "
             "non-urgent, no prefix |", "|---|---|---|---|---|"]
    for name, s in summaries.items():
        c = s["confusion"]
        lines.append(f"| {name} | {c['tp']} | {c['fn']} | {c['fp']} | {c['tn']} |")
    return "\n".join(lines)


def render_report(summaries: dict[str, dict], prompt_answers: dict[str, list[dict]],
                  worst: dict[str, list[dict]], info: dict[str, Any],
                  extra_sections: Sequence[tuple[str, str]] = ()) -> str:
    """report.md: the metrics table, the confusion table, the workshop prompts answered by every
    model, the worst cases, then `extra_sections` ((title, markdown) pairs, for later additions)."""
    out = ["# Base vs fine-tuned: evaluation report", ""]
    for key, value in info.items():
        out.append(f"- {key}: {value}")
    level = next(iter(summaries.values()))["ci_level"] if summaries else 0.95
    out += ["", f"## Metrics on the {info.get('split', 'test')} split", "",
            f"Intervals are {level:.0%} Wilson score intervals. Rules as in stage 2: the closing sentence, "
            "the urgent prefix, forbidden phrases, the dosage detector and the 1-5 sentence rule.", "",
            metrics_table(summaries), "", "### Urgent (truth) vs prefix (model)", "", confusion_table(summaries), ""]
    if prompt_answers:
        out += ["## The workshop prompts", ""]
        names = list(prompt_answers)
        for i, row in enumerate(prompt_answers[names[0]]):
            out += [f"### {i + 1}. {row['question']}", ""]
            for name in names:
                answer = prompt_answers[name][i]["answer"]
                out += [f"**{name}:** {_md_text(answer) or '(empty)'}", ""]
    if any(worst.values()):
        out += ["## Worst cases", ""]
        for name, rows in worst.items():
            out += [f"### {name}", ""]
            for row in rows:
                tag = "urgent" if row["is_urgent"] else "not urgent"
                out += [f"- **{row.get('id', '?')}** ({tag}; {'; '.join(row['problems']) or 'no rule broken'}; "
                        f"ROUGE-L {_num(row['similarity'], 3)})",
                        f"  - question: {_md_text(row.get('question', ''))[:400]}",
                        f"  - answer: {_md_text(row.get('answer', ''))[:600]}",
                        f"  - reference: {_md_text(row.get('reference', ''))[:600]}"]
            out.append("")
    for title, body in extra_sections:
        out += [f"## {title}", "", body.rstrip(), ""]
    return "\n".join(out).rstrip() + "\n"


def report_data(summaries: dict[str, dict], prompt_answers: dict[str, list[dict]],
                worst: dict[str, list[dict]], info: dict[str, Any], extras: dict | None = None) -> dict:
    """report.json: everything in the markdown report, machine-readable."""
    return {"info": info, "metrics": summaries, "comparison": compare(summaries),
            "prompts": prompt_answers, "worst_cases": worst, "extras": extras or {}}


def plot_comparison(summaries: dict[str, dict], path: str | Path | Any) -> Path | None:
    """Grouped bar chart of the rates (one bar per model), with the Wilson intervals as error bars.

    `path` may be a binary file object (e.g. a stage's atomic writer) instead of a file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summaries)
    keys = [k for k, _ in METRICS]
    labels = [label.split(" (")[0] for _, label in METRICS]
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, name in enumerate(names):
        values, lows, highs = [], [], []
        for key in keys:
            raw = summaries[name].get(key)
            v = metric_value(summaries[name], key)
            v = 0.0 if v is None else v
            values.append(v)
            if isinstance(raw, dict) and raw["rate"] is not None:
                # rounding can put a Wilson bound a hair past the rate (e.g. 1.0 vs 0.99999...)
                lows.append(max(0.0, v - raw["ci"][0]))
                highs.append(max(0.0, raw["ci"][1] - v))
            else:
                lows.append(0.0)
                highs.append(0.0)
        xs = [x + (i - (len(names) - 1) / 2) * width for x in range(len(keys))]
        bars = ax.bar(xs, values, width, label=name, yerr=[lows, highs], capsize=3)
        ax.bar_label(bars, labels=[f"{v:.0%}" if k != "similarity" else f"{v:.2f}" for k, v in zip(keys, values)],
                     fontsize=7, padding=2)
    ax.set_xticks(range(len(keys)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share of answers (similarity: ROUGE-L F1)")
    ax.set_title("Base vs fine-tuned on the held-out split (error bars: Wilson intervals)")
    ax.legend()
    fig.tight_layout()
    if hasattr(path, "write"):
        fig.savefig(path, dpi=120, format="png")
        plt.close(fig)
        return None
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def first_token_summary(probs: Sequence[float], is_urgent: Sequence[bool]) -> dict:
    """Mean next-token probability of the urgent prefix's first token, urgent vs non-urgent prompts:
    a model that learned the rule puts the mass on urgent prompts, one that learned the rate spreads it."""
    urgent = [p for p, u in zip(probs, is_urgent) if u]
    other = [p for p, u in zip(probs, is_urgent) if not u]
    return {"urgent_mean": statistics.fmean(urgent) if urgent else None, "urgent_n": len(urgent),
            "non_urgent_mean": statistics.fmean(other) if other else None, "non_urgent_n": len(other),
            "auc": rank_auc(urgent, other)}


def rank_auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a random urgent prompt scores above a random non-urgent one), ties half: 0.5 = the model knows
    only the rate, 1.0 = a threshold on its first-token probability would separate the classes."""
    if not positive or not negative:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in positive for b in negative)
    return wins / (len(positive) * len(negative))


def triage_set_section(triage_set: dict, word: str) -> str:
    """Report section for the hand-labelled triage set: urgent recall and over-triage with their
    intervals, the closing-sentence rate, mean P(first token = word) urgent vs non-urgent, confusion."""
    summaries, first = triage_set["summaries"], triage_set["first_token"]
    lines = [f"{triage_set['items']} questions labelled urgent / not urgent by a clinician "
             f"(`{triage_set['path']}`; real questions and hand-written hard cases). Unlike the split above, "
             "the labels do not come from the stage-2 detector. Answers are cut after the first few tokens "
             "(`inference.triage_max_new_tokens`): enough to read the urgent prefix, so no format column.", "",
             f'| model | urgent recall | over-triage | P("{word}") urgent | P("{word}") non-urgent | AUC |',
             "|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        f = first.get(name, {})
        pu = "n/a" if f.get("urgent_mean") is None else f"{f['urgent_mean']:.4f}"
        pn = "n/a" if f.get("non_urgent_mean") is None else f"{f['non_urgent_mean']:.4f}"
        auc = "n/a" if f.get("auc") is None else f"{f['auc']:.2f}"
        lines.append(f"| {name} | {_prop_cell(s['urgent_recall'])} | {_prop_cell(s['over_triage'])} | "
                     f"{pu} | {pn} | {auc} |")
    return "\n".join(lines + ["", confusion_table(summaries)])

