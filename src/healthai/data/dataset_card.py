"""The dataset card of the final set (stage 3): `dataset_card.md` and `answer_lengths.png`.

    notes = read_source_notes(Path("data/raw/SOURCES.md"))
    png = plot_answer_lengths(lengths_by_split, bins=20)                 # PNG bytes (matplotlib, Agg)
    text = render_card(metas, answers, review_summary, notes, config)    # Markdown

No dates or host names go into the card, so a rerun with the same inputs is byte-identical.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

from healthai.data.splitting import SPLITS

_SECTION = re.compile(r"^##\s+(\S+)(.*)$")
_LICENCE_HINT = re.compile(r"licen[cs]|terms|research only|non-commercial|copyright|CC0|CC BY|Apache", re.I)


def read_source_notes(path: Path) -> dict[str, dict]:
    """Sections of SOURCES.md by file name: repository line, original-dataset text, licence sentences."""
    notes: dict[str, dict] = {}
    if not path.is_file():
        return notes
    current: dict | None = None
    bullet: list[str] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        match = _SECTION.match(raw)
        if match:
            current = {"file": match.group(1), "title": match.group(2).strip(" ()"), "bullets": []}
            notes[match.group(1)] = current
            bullet = None
            continue
        if current is None:
            continue
        if raw.startswith("- "):
            bullet = [raw[2:].strip()]
            current["bullets"].append(bullet)
        elif raw.startswith("  ") and bullet is not None and raw.strip():
            bullet.append(raw.strip())
        else:
            bullet = None
    for note in notes.values():
        texts = [" ".join(b) for b in note.pop("bullets")]
        note["repository"] = next((t.split(":", 1)[1].strip() for t in texts if t.startswith("Repository:")), "")
        original = next((t.split(":", 1)[1].strip() for t in texts if t.startswith("Original dataset:")), "")
        note["original"] = original
        sentences = re.split(r"(?<=[.!?])\s+", original)
        note["licence"] = " ".join(s for s in sentences if _LICENCE_HINT.search(s)) or "no licence note"
    return notes


def match_source(source: str, notes: dict[str, dict]) -> dict | None:
    """The SOURCES.md section of a record's meta.source (a file name, path or stem)."""
    if not source:
        return None
    base = Path(str(source)).name.lower()
    stem = Path(base).stem
    for name, note in notes.items():
        n = name.lower()
        if base == n or stem == Path(n).stem or (stem and stem in n) or Path(n).stem in base:
            return note
    return None


def word_count(text: str) -> int:
    return len(text.split())


def plot_answer_lengths(lengths: dict[str, list[int]], bins: int) -> bytes:
    """Histogram of assistant answer lengths (words), one stacked colour per split; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    data = [lengths.get(s, []) for s in SPLITS]
    if any(data):
        ax.hist(data, bins=bins, stacked=True, label=[f"{s} ({len(d)})" for s, d in zip(SPLITS, data)])
        ax.legend()
    ax.set_xlabel("answer length (words)")
    ax.set_ylabel("examples")
    ax.set_title("Final dataset: assistant answer length")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _table(header: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def render_card(metas: list[dict], answers: list[str], review: dict, notes: dict[str, dict], settings: dict,
                categories: list[str], png_name: str = "answer_lengths.png") -> str:
    """Markdown card: counts per category and split, urgent share, lengths, sources + licences, review outcome.

    `metas` are the sidecar records (id, split, category, is_urgent, source, ...) of the final
    set, `answers` the assistant answers in the same order; `review` the review outcome counts,
    `settings` the config values worth stating.
    """
    total = len(metas)
    per_split = Counter(m["split"] for m in metas)
    cells = Counter((m["category"], m["split"]) for m in metas)
    ordered = [c for c in categories if any(m["category"] == c for m in metas)]
    ordered += sorted({m["category"] for m in metas} - set(ordered))
    rows = [[c, *(cells[(c, s)] for s in SPLITS), sum(cells[(c, s)] for s in SPLITS)] for c in ordered]
    rows.append(["**total**", *(per_split[s] for s in SPLITS), total])

    urgent_rows = []
    for s in [*SPLITS, "all"]:
        part = [m for m in metas if s == "all" or m["split"] == s]
        n_urgent = sum(1 for m in part if m["is_urgent"])
        share = f"{100 * n_urgent / len(part):.1f}%" if part else "-"
        urgent_rows.append([s, n_urgent, len(part), share])

    lengths = sorted(word_count(a) for a in answers)
    if lengths:
        mid = len(lengths) // 2
        median = lengths[mid] if len(lengths) % 2 else (lengths[mid - 1] + lengths[mid]) / 2
        length_line = (f"min {lengths[0]}, median {median:g}, mean {sum(lengths) / len(lengths):.1f}, "
                       f"max {lengths[-1]} words")
    else:
        length_line = "no examples"

    source_counts = Counter(m.get("source") or "unknown" for m in metas)
    source_rows = []
    for source, n in sorted(source_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        note = match_source(source, notes)
        if note:
            source_rows.append([f"`{source}`", n, note["repository"] or "-", note["licence"]])
        else:
            source_rows.append([f"`{source}`", n, "-", "not found in the source notes"])

    origin = Counter(m.get("origin", "sample") for m in metas)
    lines = [
        "# Dataset card: health assistant Q&A (stage 3 final set)",
        "",
        f"{total} single-turn patient questions with short, safe assistant answers, in chat form "
        "(`{\"messages\": [system, user, assistant]}`), split into train / val / test. Ids and metadata are "
        "in the line-aligned `*.meta.jsonl` sidecars.",
        "",
        "## Counts per category and split",
        "",
        _table(["category", *SPLITS, "total"], rows),
        "",
        "## Urgent examples",
        "",
        "Urgent = the question describes a possible emergency; its answer opens with the urgent prefix. "
        f"The test split keeps at least {settings.get('min_test_urgent')} of them for the evaluation.",
        "",
        _table(["split", "urgent", "examples", "share"], urgent_rows),
        "",
        "## Answer length",
        "",
        f"Assistant answers: {length_line}.",
        "",
        f"![answer length histogram]({png_name})",
        "",
        "## Review outcome",
        "",
        f"{review.get('selected', 0)} examples were selected for manual review (stratified by category, "
        f"urgent over-represented).",
        "",
        _table(["outcome", "examples"], [
            ["accepted by the reviewer", review.get("accepted", 0)],
            ["edited by the reviewer (re-validated)", review.get("edited", 0)],
            ["rejected by the reviewer", review.get("rejected", 0)],
            ["edited, but the edit failed validation (left out)", review.get("edit_failed", 0)],
            ["skipped or not reviewed", review.get("unreviewed", 0)],
        ]),
        "",
        f"Policy for examples with no decision: `{settings.get('unreviewed_policy')}` — "
        + ("they were kept when they pass every validation rule "
           f"({review.get('unreviewed_kept', 0)} kept, {review.get('unreviewed_dropped', 0)} left out)."
           if settings.get("unreviewed_policy") == "accept_valid"
           else f"they were left out ({review.get('unreviewed_dropped', 0)})."),
        "",
        f"Final set by origin: {origin.get('sample', 0)} from the stratified sample, "
        f"{origin.get('reserve', 0)} topped up from the reserve (records that meet every criterion). "
        f"Target: {settings.get('target_total')} examples.",
        "",
        "## Sources and licences",
        "",
        _table(["source", "examples", "repository", "licence notes"], source_rows),
        "",
        "All sources are public research data; see `data/raw/SOURCES.md` for the full notes. "
        "ChatDoctor-derived text is for academic research only, with no commercial or clinical use.",
        "",
        "## How it was made",
        "",
        "Stage 1 curated the raw Q&A (cleaning, boilerplate and personal data removal, deduplication); "
        "stage 2 filtered, categorised, sampled and rewrote the answers (1-5 sentences, urgent prefix, "
        "closing sentence, no dosages, no new drug names) and validated them; stage 3 applied the manual "
        "review, re-validated edits, topped up to the per-category targets and split with near-duplicate "
        f"questions kept in one split (Jaccard >= {settings.get('near_dup_threshold')} on word shingles).",
        "",
    ]
    return "\n".join(lines)
