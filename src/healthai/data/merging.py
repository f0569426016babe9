"""Stage 3: apply the manual review, top up to the targets, split, write the final set and its card.

    run_merge(cfg, force=False)     # what 3.Merge/merge_dataset.py calls

Reads `2.filter/rewritten.jsonl` (the stratified sample) and `2.filter/reserve.jsonl`, and the
review decisions in `merge.review_file` when a reviewer filled it in. Every input record ends
in exactly one place: a split, `rejected.jsonl` (with its reason) or the unused reserve
(counted). Every record of the final set passes the stage-2 validator
(`healthai.validation.validate_answer`), edited answers included.

The pure steps, in order: `check_record` (structure), `decide` (review decision + policy ->
keep or reject), `category_targets`, `fill_to_targets` (trim surplus, top up from the reserve),
then `healthai.splitting`.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from healthai.config import PipelineConfig
from healthai.pipeline.io import BadLine, iter_jsonl
from healthai.data.review import ReviewRow, carry_decisions, format_review_csv, format_review_jsonl, message_text, parse_review_csv, row_from_record, select_for_review

log = logging.getLogger("healthai.merge")

ROLES = ("system", "user", "assistant")
REVIEW_RANK = {"edited": 0, "accepted": 1, "unreviewed": 2, "not_selected": 3}
"""Who stays first when a category is over its target: reviewed examples are never trimmed before unreviewed ones."""


@dataclass
class Item:
    """One input record on its way through the merge."""

    record: dict
    origin: str
    """'sample' (rewritten.jsonl) or 'reserve' (reserve.jsonl)."""
    review: str = "not_selected"
    """edited | accepted | unreviewed | not_selected (what the review did to it)."""
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def category(self) -> str:
        return str(self.record["meta"]["category"])

    @property
    def is_urgent(self) -> bool:
        return bool(self.record["meta"]["is_urgent"])


@dataclass
class Rejection:
    record: dict | str
    id: str
    reason: str
    detail: str

    def entry(self) -> dict:
        return {"id": self.id, "reason": self.reason, "detail": self.detail, "record": self.record}


# -- structure ---------------------------------------------------------------------------------
def check_record(record: dict, categories: list[str]) -> tuple[str, str] | None:
    """(reason, detail) when a stage-2 record lacks the contract's form, else None."""
    messages = record.get("messages")
    if not isinstance(messages, list) or len(messages) != 3:
        return "bad_messages", "messages must be [system, user, assistant]"
    for message, role in zip(messages, ROLES):
        if not isinstance(message, dict) or message.get("role") != role:
            return "bad_messages", f"messages must be [system, user, assistant], got role {message.get('role') if isinstance(message, dict) else message!r}"
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            return "bad_messages", f"empty {role} message"
    meta = record.get("meta")
    if not isinstance(meta, dict):
        return "bad_meta", "meta must be an object"
    if not isinstance(meta.get("is_urgent"), bool):
        return "bad_meta", f"meta.is_urgent must be true or false, got {meta.get('is_urgent')!r}"
    if meta.get("category") not in categories:
        return "unknown_category", f"meta.category {meta.get('category')!r} is not one of {categories}"
    if not isinstance(meta.get("original_answer", ""), str):
        return "bad_meta", "meta.original_answer must be a string"
    return None


# -- decisions ---------------------------------------------------------------------------------
def with_answer(record: dict, answer: str) -> dict:
    """A copy of `record` whose assistant message is `answer`."""
    out = dict(record)
    out["messages"] = [dict(m, content=answer) if m.get("role") == "assistant" else dict(m)
                       for m in record["messages"]]
    return out


def decide(item: Item, row: ReviewRow | None, selected: bool, policy: str,
           validate: Callable[[str, dict], dict[str, bool]]) -> Item | Rejection:
    """Apply a review decision (or the unreviewed policy) to one record: the kept Item or a Rejection.

    reject -> out; edit -> the edited answer, kept only if it passes every rule; accept -> kept if
    it passes every rule; no decision / skip -> `policy` (accept_valid: kept if valid; reject:
    out) for selected records; records never selected are kept if valid.
    """
    decision = row.decision if row else ""
    note = f" ({row.note})" if row and row.note else ""
    if decision == "reject":
        return Rejection(item.record, item.id, "review_rejected", f"rejected in manual review{note}")
    if decision == "edit":
        edited = with_answer(item.record, row.edited_answer)
        checks = validate(row.edited_answer, edited)
        failed = [k for k, v in checks.items() if not v]
        if failed:
            return Rejection(edited, item.id, "edit_failed_validation", f"edited answer fails: {', '.join(failed)}")
        edited["meta"] = dict(edited["meta"], reviewed_answer="edited", checks=checks)
        return Item(edited, item.origin, "edited", checks)
    checks = validate(message_text(item.record, "assistant"), item.record)
    failed = [k for k, v in checks.items() if not v]
    if decision == "accept":
        if failed:
            return Rejection(item.record, item.id, "failed_validation",
                             f"accepted in review but fails: {', '.join(failed)} (edit it instead)")
        return Item(item.record, item.origin, "accepted", checks)
    if selected and policy == "reject":
        return Rejection(item.record, item.id, "unreviewed", "selected for review, no decision, unreviewed_policy=reject")
    if failed:
        return Rejection(item.record, item.id, "failed_validation", f"fails: {', '.join(failed)}")
    return Item(item.record, item.origin, "unreviewed" if selected else "not_selected", checks)


# -- targets -------------------------------------------------------------------------------------
def category_targets(total: int, weights: dict[str, float]) -> dict[str, int]:
    """`total` split over categories by weight (largest remainder; ties to the earlier category)."""
    raw = {c: total * w for c, w in weights.items()}
    out = {c: int(v) for c, v in raw.items()}
    order = sorted(weights, key=lambda c: (-(raw[c] - out[c]), list(weights).index(c)))
    for c in order[: total - sum(out.values())]:
        out[c] += 1
    return out


@dataclass
class Fill:
    final: list[Item]
    surplus: list[Item]
    """Valid sample records left out because their category was over target."""
    unused_reserve: list[Item]
    topped_up: dict[str, int]
    shortfall: dict[str, int]
    """Categories still below target (then filled from other categories where possible)."""


def fill_to_targets(kept: list[Item], reserve: list[Item], targets: dict[str, int], trim: bool,
                    seed: int) -> Fill:
    """Trim each category to its target (reviewed first), top up from the reserve, then fill any gap.

    Reserve items top up their own category first; if a category has no reserve left, the total
    is still brought to sum(targets) from surplus then reserve of other categories (the shortfall
    is reported). Order inside a tier is seeded-random and independent of input order.
    """
    rng = random.Random(seed)

    def ordered(items: list[Item]) -> list[Item]:
        items = sorted(items, key=lambda it: it.id)
        rng.shuffle(items)
        return sorted(items, key=lambda it: REVIEW_RANK.get(it.review, 4))

    by_cat: dict[str, list[Item]] = {c: [] for c in targets}
    for item in kept:
        by_cat.setdefault(item.category, []).append(item)
    reserve_by_cat: dict[str, list[Item]] = {c: [] for c in targets}
    for item in reserve:
        reserve_by_cat.setdefault(item.category, []).append(item)
    final: list[Item] = []
    surplus: list[Item] = []
    topped: dict[str, int] = {}
    shortfall: dict[str, int] = {}
    leftover_reserve: list[Item] = []
    for category in by_cat:
        items = ordered(by_cat[category])
        target = targets.get(category, 0)
        if trim and len(items) > target:
            final += items[:target]
            surplus += items[target:]
        else:
            final += items
        pool = ordered(reserve_by_cat.get(category, []))
        need = max(0, target - len(items))
        final += pool[:need]
        if need:
            topped[category] = min(need, len(pool))
            if len(pool) < need:
                shortfall[category] = need - len(pool)
        leftover_reserve += pool[need:]
    for category in reserve_by_cat:
        if category not in by_cat:
            leftover_reserve += ordered(reserve_by_cat[category])
    gap = sum(targets.values()) - len(final)
    if gap > 0 and trim:
        extra = ordered(surplus)[:gap]
        chosen = {id(x) for x in extra}
        surplus = [x for x in surplus if id(x) not in chosen]
        final += extra
        gap -= len(extra)
        if gap > 0:
            extra = ordered(leftover_reserve)[:gap]
            chosen = {id(x) for x in extra}
            leftover_reserve = [x for x in leftover_reserve if id(x) not in chosen]
            final += extra
            for item in extra:
                topped[item.category] = topped.get(item.category, 0) + 1
    return Fill(final, surplus, leftover_reserve, topped, shortfall)


# -- the stage --------------------------------------------------------------------------------------
def _load(path: Path, origin: str, run, rejected, seen: set[str], categories: list[str],
          outcome: Counter) -> tuple[list[Item], int]:
    """Read one stage-2 file: good Items, bad lines and bad records quarantined. Returns (items, n_lines)."""
    items: list[Item] = []
    total = bad = 0
    first_bad: BadLine | None = None
    for entry in iter_jsonl(path, run.cfg.project.max_record_bytes, required=("id", "messages", "meta")):
        total += 1
        if isinstance(entry, BadLine):
            bad += 1
            first_bad = first_bad or entry
            run.reject_bad_line(entry, rejected)
            outcome["rejected:" + entry.reason] += 1
            continue
        record = entry.record
        problem = check_record(record, categories)
        if problem is None and str(record["id"]) in seen:
            problem = ("duplicate_id", "id already seen in the sample or reserve")
        if problem is not None:
            log.warning("%s:%d: %s (%s) — quarantined in rejected.jsonl", entry.file, entry.line, *problem)
            rejected.write_record({"id": str(record.get("id")), "reason": problem[0], "detail": problem[1],
                                   "record": record, "source_file": entry.file, "source_line": entry.line})
            outcome["rejected:" + problem[0]] += 1
            continue
        seen.add(str(record["id"]))
        items.append(Item(record, origin))
    run.check_bad_fraction(str(path), bad, total, first_bad)
    return items, total


def _review_has_decisions(path: Path) -> list[ReviewRow] | None:
    """The decisions of an existing review file (None when there is none); a malformed row raises."""
    if not path.is_file():
        return None
    return parse_review_csv(path)


def run_merge(cfg: PipelineConfig, force: bool = False) -> dict:
    """Stage 3 over $PROJECT_DIR/2.filter -> $PROJECT_DIR/3.merge. Returns the manifest."""
    from healthai.data.dataset_card import plot_answer_lengths, read_source_notes, render_card
    from healthai.data.splitting import SPLITS, assign_splits, group_near_duplicates
    from healthai.pipeline.stage import StageRun
    from healthai.data.validation import validate_answer

    mc = cfg.merge
    in_dir = cfg.project_path() / "2.filter"
    sample_path, reserve_path = in_dir / "rewritten.jsonl", in_dir / "reserve.jsonl"
    review_path = cfg.resolve(mc.review_file)
    # Read the decisions before anything is opened for writing: a malformed row stops the stage
    # with its line number and changes nothing.
    previous = _review_has_decisions(review_path) or []
    decided = [r for r in previous if r.decision]
    inputs = [sample_path, reserve_path] + ([review_path] if decided else [])
    categories = [c.name for c in cfg.filter.categories]

    with StageRun("merge", cfg, inputs=inputs, config_sections=["merge", "filter"], force=force,
                  output_subdir="3.merge") as run:
        if run.up_to_date:
            return run.previous
        rejected = run.writer("rejected.jsonl")
        seen: set[str] = set()
        outcome: Counter = Counter()
        sample, n_sample = _load(sample_path, "sample", run, rejected, seen, categories, outcome)
        reserve, n_reserve = _load(reserve_path, "reserve", run, rejected, seen, categories, outcome)
        known = {it.id for it in sample + reserve}
        stale = [r.id for r in decided if r.id not in known]
        if stale:
            log.warning("%d review decision(s) name ids that are not in the input (ignored): %s",
                        len(stale), ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else ""))

        # the review selection (deterministic) with earlier decisions carried over
        selection = select_for_review([it.record for it in sample], mc.review_size, mc.review_urgent_share, mc.seed)
        rows = carry_decisions(selection, previous, known)
        by_id = {it.id: it for it in sample + reserve}
        for row in rows:  # what the reviewer sees comes from the current input
            fresh = row_from_record(by_id[row.id].record)
            row.checks, row.original_answer = fresh.checks, fresh.original_answer
        run.writer("review/review.csv").write(format_review_csv(rows))
        run.writer("review/review.jsonl").write(format_review_jsonl(rows))
        decision_of = {r.id: r for r in rows if r.decision}
        selected_ids = {r.id for r in selection}

        def validate(answer: str, record: dict) -> dict[str, bool]:
            meta = record["meta"]
            return validate_answer(answer, meta.get("original_answer") or "", meta["is_urgent"], cfg.filter)

        from tqdm import tqdm

        kept: list[Item] = []
        reserve_ok: list[Item] = []
        for item in tqdm(sample + reserve, desc="merge: review + validation", unit="rec", mininterval=2,
                         disable=None):
            row = decision_of.get(item.id)
            result = decide(item, row, item.id in selected_ids, mc.unreviewed_policy, validate)
            if item.id in selected_ids:
                outcome["decision:" + (row.decision if row else "undecided")] += 1
                if isinstance(result, Rejection):
                    outcome["selected_dropped:" + result.reason] += 1
            if isinstance(result, Rejection):
                rejected.write_record(result.entry())
                outcome["rejected:" + result.reason] += 1
                continue
            (kept if item.origin == "sample" else reserve_ok).append(result)

        weights = {c.name: c.weight for c in cfg.filter.categories}
        targets = category_targets(mc.target_total, weights)
        fill = fill_to_targets(kept, reserve_ok, targets, mc.trim_to_target, mc.seed)
        outcome["rejected:over_target"] += len(fill.surplus)
        for item in fill.surplus:
            rejected.write_record({"id": item.id, "reason": "over_target",
                                   "detail": f"category '{item.category}' already at its target of "
                                             f"{targets.get(item.category)} (merge.target_total={mc.target_total})",
                                   "record": item.record})
        if fill.shortfall:
            log.warning("categories below target even after the reserve: %s",
                        ", ".join(f"{c} short by {n}" for c, n in fill.shortfall.items()))

        final = sorted(fill.final, key=lambda it: it.id)
        groups = group_near_duplicates([message_text(it.record, "user") for it in final], mc.near_dup_threshold,
                                       mc.shingle_words, mc.num_perm, mc.seed)
        splits = assign_splits([it.category for it in final], [it.is_urgent for it in final], groups,
                               mc.val_ratio, mc.test_ratio, mc.min_test_urgent, mc.seed)
        rng = random.Random(mc.seed)
        metas: list[dict] = []
        answers: list[str] = []
        lengths: dict[str, list[int]] = {s: [] for s in SPLITS}
        for split in SPLITS:
            chosen = [(it, g) for it, g, s in zip(final, groups, splits) if s == split]
            rng.shuffle(chosen)  # categories mixed inside a split file
            data, side = run.writer(f"{split}.jsonl"), run.writer(f"{split}.meta.jsonl")
            for item, group in chosen:
                meta = item.record["meta"]
                answer = message_text(item.record, "assistant")
                data.write_record({"messages": [{"role": m["role"], "content": m["content"]}
                                                for m in item.record["messages"]]})
                side_record = {"id": item.id, "split": split, "category": item.category,
                               "is_urgent": item.is_urgent, "source": meta.get("source"),
                               "origin": item.origin, "review": item.review, "backend": meta.get("backend"),
                               "group": final[group].id}
                side.write_record(side_record)
                metas.append(side_record)
                answers.append(answer)
                lengths[split].append(len(answer.split()))

        reviewed = kept + reserve_ok
        unreviewed = outcome["decision:undecided"] + outcome["decision:skip"]
        unreviewed_kept = sum(1 for it in reviewed if it.review == "unreviewed")
        selected_outcomes = {
            "selected": len(selection),
            "accepted": sum(1 for it in reviewed if it.review == "accepted"),
            "edited": sum(1 for it in reviewed if it.review == "edited"),
            "rejected": outcome["rejected:review_rejected"],
            "edit_failed": outcome["rejected:edit_failed_validation"],
            "unreviewed": unreviewed,
            "unreviewed_kept": unreviewed_kept,
            "unreviewed_dropped": unreviewed - unreviewed_kept,
        }
        png = plot_answer_lengths(lengths, mc.histogram_bins)
        run.writer("answer_lengths.png", binary=True).write(png)
        notes = read_source_notes(cfg.resolve(mc.sources_file))
        settings = {"min_test_urgent": mc.min_test_urgent, "unreviewed_policy": mc.unreviewed_policy,
                    "target_total": mc.target_total, "near_dup_threshold": mc.near_dup_threshold}
        run.writer("dataset_card.md").write(render_card(metas, answers, selected_outcomes, notes, settings, categories))

        n_in = n_sample + n_reserve
        run.conserve(n_in=n_in, kept=len(final), rejected=rejected.lines, unused_reserve=len(fill.unused_reserve))
        per_split = Counter(splits)
        run.stats.update({
            "review": selected_outcomes,
            "review_file": str(review_path) if decided else None,
            "stale_decisions": len(stale),
            "targets": targets,
            "final_per_category": dict(Counter(it.category for it in final)),
            "topped_up": fill.topped_up,
            "shortfall": fill.shortfall,
            "splits": {s: per_split.get(s, 0) for s in SPLITS},
            "test_urgent": sum(1 for it, s in zip(final, splits) if s == "test" and it.is_urgent),
            "near_dup_groups": len(set(groups)),
            "rejected_by_reason": {k.split(":", 1)[1]: v for k, v in sorted(outcome.items())
                                   if k.startswith("rejected:")},
        })
        print_summary(run.stats, n_in, len(final), rejected.lines, len(fill.unused_reserve), mc.unreviewed_policy)
    return run.previous


def print_summary(stats: dict, n_in: int, kept: int, rejected: int, unused: int, policy: str) -> None:
    review = stats["review"]
    print("--- MERGE STATISTICS ---")
    print(f"input records (sample + reserve): {n_in}")
    print(f"final examples: {kept}  (train {stats['splits']['train']}, val {stats['splits']['val']}, "
          f"test {stats['splits']['test']}; urgent in test: {stats['test_urgent']})")
    print(f"rejected: {rejected}  {stats['rejected_by_reason']}")
    print(f"unused reserve: {unused}")
    print(f"review: {review['selected']} selected; accepted {review['accepted']}, edited {review['edited']}, "
          f"rejected {review['rejected']}, edit failed {review['edit_failed']}, no decision {review['unreviewed']}")
    if review["unreviewed"]:
        if policy == "accept_valid":
            print(f"unreviewed_policy=accept_valid: {review['unreviewed_kept']} examples nobody reviewed were "
                  f"accepted because they pass validation (set merge.unreviewed_policy=reject to drop them)")
        else:
            print(f"unreviewed_policy=reject: {review['unreviewed']} examples with no decision were left out")
    if stats["topped_up"]:
        print(f"topped up from the reserve: {stats['topped_up']}")
    if stats["shortfall"]:
        print(f"below target (reserve exhausted): {stats['shortfall']}")
    print("------------------------")
