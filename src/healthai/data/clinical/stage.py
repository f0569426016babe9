"""Stage 4 as a StageRun: tables -> clean -> DrugBank -> group split -> 4 task types -> leakage filter.

    build_clinical_dataset(cfg, force=False) -> manifest dict

Writes under $PROJECT_DIR/4.clinical/: {train,dev,test}.jsonl ({"messages": [...]}) with
line-aligned {split}.meta.jsonl sidecars, rejected.jsonl (bad, incomplete and duplicate
catalogue rows), leakage_removed.jsonl, matches.csv, unmatched.csv, stats.json,
dataset_card.md, manifest.json.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from pathlib import Path

import pandas as pd

from healthai.config import PipelineConfig
from healthai.config.clinical import TASK_TYPES
from healthai.data.clinical.leakage import ingredients_in_splits, remove_mechanism_leaks
from healthai.data.clinical.matching import DRUGBANK_COLUMNS, DrugIndex, Matcher, build_index, parse_feature_name
from healthai.data.clinical.splits import SPLITS, assign_splits, split_key
from healthai.data.clinical.tables import RowProblem, clean_medicines, read_csv_rows
from healthai.data.clinical.tasks import DrugText, generate_items, medicine_facts
from healthai.errors import InputError
from healthai.pipeline.stage import StageRun

log = logging.getLogger("healthai.clinical")
OUTPUT_SUBDIR = "4.clinical"
FEATURE_COLUMNS = ("state", "group", "mechanism_of_action", "pharmacodynamics", "indication")


# -- reading the reference tables (I/O edge) ----------------------------------------------------

def read_drugbank(path: Path, salt_words: list[str]) -> DrugIndex:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read the DrugBank vocabulary: {str(exc).splitlines()[0]}", file=str(path)) from None
    missing = [c for c in DRUGBANK_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s) {missing} in the header", file=str(path), line=1)
    return build_index(frame, salt_words)


def read_drug_features(path: Path, index: DrugIndex) -> tuple[dict[str, DrugText], list[str]]:
    """DrugBank id -> mechanism / pharmacodynamics / indication text; names that could not be placed."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read the drug features: {str(exc).splitlines()[0]}", file=str(path)) from None
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s) {missing} in the header", file=str(path), line=1)
    out: dict[str, DrugText] = {}
    unplaced: list[str] = []
    descriptions = frame["description"] if "description" in frame.columns else [""] * len(frame)
    for row_no, (state, group, desc, moa, pdx, ind) in enumerate(zip(
            frame["state"], frame["group"], descriptions, frame["mechanism_of_action"],
            frame["pharmacodynamics"], frame["indication"]), start=2):
        name = parse_feature_name(state, group, desc)
        hit = index.by_name.get(name.lower().strip()) if name else None
        if not hit:
            unplaced.append(f"{path}:{row_no}: {name or '(no name sentence)'}")
            continue
        out.setdefault(hit[0], DrugText(name=index.names.get(hit[0], name), mechanism=moa,
                                        pharmacodynamics=pdx, indication=ind))
    return out, unplaced


# -- the stage ----------------------------------------------------------------------------------

def build_clinical_dataset(cfg: PipelineConfig, force: bool = False) -> dict:
    c = cfg.clinical
    med_path, db_path, feat_path = (cfg.resolve(c.medicines_csv), cfg.resolve(c.drugbank_csv),
                                    cfg.resolve(c.drug_features_csv))
    with StageRun("clinical", cfg, inputs=[med_path, db_path, feat_path], config_sections=["clinical"],
                  output_subdir=OUTPUT_SUBDIR, force=force) as run:
        if run.up_to_date:
            return run.previous
        rejected = run.writer("rejected.jsonl")

        # 1. read + clean the catalogue
        _, rows, bad = read_csv_rows(med_path, required=c.required_columns, name=c.medicines_csv)
        for problem in bad:
            log.warning("%s: %s (%s) — quarantined in rejected.jsonl", problem.where(), problem.reason,
                        problem.detail)
            rejected.write_record(problem.rejected())
        first = bad[0] if bad else None
        run.check_bad_fraction(str(med_path), len(bad), len(rows) + len(bad),
                               _as_badline(first) if first else None)
        medicines, dropped, clean_counts = clean_medicines(rows, c, c.medicines_csv)
        for problem in dropped:
            if problem.reason == "bad_composition":
                log.warning("%s: %s (%s) — quarantined in rejected.jsonl", problem.where(), problem.reason,
                            problem.detail)
            rejected.write_record(problem.rejected())
        log.info("catalogue: %d rows, %d kept, %d malformed, %s", len(rows) + len(bad), len(medicines), len(bad),
                 clean_counts)

        # 2. DrugBank + PrimeKG
        index = read_drugbank(db_path, c.salt_words)
        features, unplaced = read_drug_features(feat_path, index)
        for where in unplaced:
            log.info("drug features: no DrugBank entry for %s", where)
        matcher = Matcher(index, c)
        matches_per_med = [[matcher(i.base, i.detail) for i in m.ingredients] for m in medicines]
        match_stats, match_rows, unmatched_rows = summarise_matches(medicines, matches_per_med, index)

        # 3. group split
        keys = [split_key(m.name, [i.base for i in m.ingredients]) for m in medicines]
        assignment = assign_splits(keys, c.train_ratio, c.dev_ratio, c.seed)
        split_of_line = {m.line: assignment[k] for m, k in zip(medicines, keys)}
        key_of_line = {m.line: k for m, k in zip(medicines, keys)}

        # 4. items
        facts = [medicine_facts(m, ms, features, c) for m, ms in zip(medicines, matches_per_med)]
        items, task_counts = generate_items(facts, c)
        by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
        for item in items:
            line = item["meta"]["source_rows"][0]
            item["meta"]["split"] = split_of_line[line]
            item["meta"]["split_key"] = key_of_line[line]
            item["meta"]["source_file"] = c.medicines_csv
            by_split[split_of_line[line]].append(item)

        # 5. leakage filter on test
        seen = ingredients_in_splits(((split_of_line[f.medicine.line], f.drugbank_ids) for f in facts))
        by_split["test"], leaked, leak_counts = remove_mechanism_leaks(by_split["test"], seen)

        # 6. outputs
        for split in SPLITS:
            out, meta_out = run.writer(f"{split}.jsonl"), run.writer(f"{split}.meta.jsonl")
            for item in sorted(by_split[split], key=lambda it: it["meta"]["id"]):
                out.write_record({"messages": item["messages"]})
                meta_out.write_record(_meta_record(item))
        leak_out = run.writer("leakage_removed.jsonl")
        for item in leaked:
            leak_out.write_record({**_meta_record(item), "messages": item["messages"]})
        _write_csv(run.writer("matches.csv"), ["ingredient", "occurrences", "drugbank_id", "drugbank_name",
                                               "method", "matched_form"], match_rows)
        _write_csv(run.writer("unmatched.csv"), ["ingredient", "occurrences", "example_composition",
                                                 "example_line"], unmatched_rows)

        stats = {
            "rows": {"read": len(rows) + len(bad), "kept": len(medicines), "malformed": len(bad), **clean_counts},
            "matching": match_stats,
            "drug_features": {"rows_placed": len(features), "rows_unplaced": len(unplaced)},
            "split_keys": dict(Counter(assignment.values())),
            "split_rows": dict(Counter(split_of_line.values())),
            "tasks": task_counts,
            "items": {t: {s: sum(1 for it in by_split[s] if it["meta"]["task_type"] == t) for s in SPLITS}
                      for t in TASK_TYPES},
            "leakage_removed": {t: leak_counts.get(t, 0) for t in TASK_TYPES},
        }  # wall time lives in manifest.json: outputs stay byte-identical across reruns
        stats_out = run.writer("stats.json")
        stats_out.write(json.dumps(stats, ensure_ascii=False, indent=2) + "\n")
        run.writer("dataset_card.md").write(dataset_card(stats, cfg))
        run.stats.update({"items": {s: len(by_split[s]) for s in SPLITS},
                          "ingredient_match_rate": match_stats["name_match_rate"],
                          "leakage_removed": sum(leak_counts.values())})
        run.conserve(n_in=len(rows) + len(bad), kept=len(medicines), rejected=len(bad) + len(dropped))
        print(format_stats(stats))
    return run.previous


def _as_badline(problem: RowProblem):
    from healthai.pipeline.io import BadLine

    return BadLine(problem.file, problem.line, problem.reason, problem.detail, str(problem.record))


def _meta_record(item: dict) -> dict:
    m = item["meta"]
    out = {"id": m["id"], "split": m["split"], "split_key": m["split_key"], "task_type": m["task_type"],
           "drugbank_ids": m["drugbank_ids"], "ingredients": m["ingredients"], "medicine": m["medicine"],
           "source_file": m["source_file"], "source_rows": m["source_rows"], "mechanism_ids": m["mechanism_ids"],
           "template": m["template"]}
    if "leak_reason" in m:
        out["leak_reason"] = m["leak_reason"]
    return out


def _write_csv(writer, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    writer.write(buf.getvalue())


def summarise_matches(medicines, matches_per_med, index: DrugIndex) -> tuple[dict, list[list], list[list]]:
    """Match rates (per distinct name, per occurrence, per product) and the matches / unmatched tables."""
    occurrences: Counter = Counter()
    found: dict[str, object] = {}
    example: dict[str, tuple[str, int]] = {}
    full = 0
    for med, ms in zip(medicines, matches_per_med):
        full += all(m is not None for m in ms)
        for ing, m in zip(med.ingredients, ms):
            occurrences[ing.base] += 1
            found.setdefault(ing.base, m)
            example.setdefault(ing.base, (med.composition, med.line))
    names = len(occurrences)
    matched = sum(1 for n in occurrences if found[n] is not None)
    exact = sum(1 for n in occurrences if found[n] is not None and found[n].method == "exact")
    methods = Counter(found[n].method for n in occurrences if found[n] is not None)
    total_occ = sum(occurrences.values())
    matched_occ = sum(v for n, v in occurrences.items() if found[n] is not None)
    stats = {
        "ingredient_names": names,
        "names_matched": matched,
        "name_match_rate": round(matched / names, 4) if names else 0.0,
        "names_exact": exact,
        "exact_only_rate": round(exact / names, 4) if names else 0.0,
        "occurrence_match_rate": round(matched_occ / total_occ, 4) if total_occ else 0.0,
        "products_fully_matched": round(full / len(medicines), 4) if medicines else 0.0,
        "methods": dict(methods.most_common()),
    }
    match_rows = [[n, occurrences[n], found[n].drugbank_id, found[n].drugbank_name, found[n].method,
                   found[n].candidate] for n in sorted(occurrences) if found[n] is not None]
    unmatched_rows = [[n, occurrences[n], example[n][0], example[n][1]]
                      for n in sorted(occurrences, key=lambda n: (-occurrences[n], n)) if found[n] is None]
    return stats, match_rows, unmatched_rows


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def format_stats(stats: dict) -> str:
    """The printed `--- CLINICAL DATASET STATISTICS ---` block."""
    r, m = stats["rows"], stats["matching"]
    lines = ["--- CLINICAL DATASET STATISTICS ---",
             f"catalogue rows read      : {r['read']}",
             f"  kept                   : {r['kept']}",
             f"  exact duplicates       : {r['duplicate']}",
             f"  incomplete             : {r['incomplete']}",
             f"  bad composition        : {r['bad_composition']}",
             f"  malformed CSV rows     : {r['malformed']}",
             f"  boilerplate removed in : {r['boilerplate_removed']}",
             f"ingredient names         : {m['ingredient_names']}",
             f"  matched to DrugBank    : {m['names_matched']} ({_pct(m['names_matched'], m['ingredient_names'])}; "
             f"exact lower-cased match alone {m['names_exact']}, {_pct(m['names_exact'], m['ingredient_names'])})",
             f"  occurrences matched    : {100 * m['occurrence_match_rate']:.1f}%",
             f"  products fully matched : {100 * m['products_fully_matched']:.1f}%",
             f"split keys (train/dev/test): {stats['split_keys'].get('train', 0)}/"
             f"{stats['split_keys'].get('dev', 0)}/{stats['split_keys'].get('test', 0)}",
             "",
             f"{'task type':28s}{'train':>7s}{'dev':>7s}{'test':>7s}{'leak-removed':>14s}"]
    totals = Counter()
    for task, per in stats["items"].items():
        removed = stats["leakage_removed"].get(task, 0)
        lines.append(f"{task:28s}{per['train']:>7d}{per['dev']:>7d}{per['test']:>7d}{removed:>14d}")
        totals.update(per)
        totals["removed"] += removed
    lines.append(f"{'total':28s}{totals['train']:>7d}{totals['dev']:>7d}{totals['test']:>7d}{totals['removed']:>14d}")
    return "\n".join(lines)


def dataset_card(stats: dict, cfg: PipelineConfig) -> str:
    c = cfg.clinical
    items = "\n".join(f"| {t} | {p['train']} | {p['dev']} | {p['test']} | {stats['leakage_removed'][t]} |"
                      for t, p in stats["items"].items())
    m = stats["matching"]
    return f"""# Clinical-reasoning Q&A dataset (stage 4)

Built by `4.Clinical-reasoning/build_clinical_dataset.py` from three tables: the commercial
medicine catalogue (`{c.medicines_csv}`), the DrugBank open vocabulary (`{c.drugbank_csv}`) and the
PrimeKG drug-feature subset (`{c.drug_features_csv}`). Every answer is assembled from table values
only (names, strengths, uses, side effects, DrugBank ids and DrugBank-derived text); nothing is
generated by a model. Not for clinical use.

## Contents

Files: `train.jsonl`, `dev.jsonl`, `test.jsonl` (`{{"messages": [system, user, assistant]}}`), each with
a line-aligned `*.meta.jsonl` (`id, split, split_key, task_type, drugbank_ids, ingredients,
source_file, source_rows`).

| task type | train | dev | test | test items removed (leakage) |
|---|---|---|---|---|
{items}

- Split: by key [first word of the medicine name] + [ingredients without strengths]; ratios
  {c.train_ratio}/{c.dev_ratio}/{1 - c.train_ratio - c.dev_ratio:.2f} of catalogue rows, seed {c.seed}.
- Leakage: test items quoting or tied to the mechanism of action of an ingredient that occurs in a
  train/dev product are removed (`leakage_removed.jsonl`).
- DrugBank matching: {m['names_matched']} of {m['ingredient_names']} ingredient names
  ({_pct(m['names_matched'], m['ingredient_names'])}; exact lower-cased match alone
  {_pct(m['names_exact'], m['ingredient_names'])});
  unmatched names in `unmatched.csv`, every match and its rule in `matches.csv`.

## Licences and terms

- **DrugBank vocabulary** (names, synonyms, ids): DrugBank Open Data, **CC0 1.0**.
- **PrimeKG drug features** (mechanism of action, pharmacodynamics, indication text): taken from
  DrugBank; DrugBank's **CC BY-NC 4.0** terms apply. Items of type `pharmacodynamics`, and
  `therapeutic_reasoning` items that quote a DrugBank indication, carry this text: the dataset is
  for **research and non-commercial use only**, with attribution to DrugBank (Knox et al., NAR 2024)
  and PrimeKG (Chandak, Huang & Zitnik, Scientific Data 2023).
- **Medicine_Details.csv** (Kaggle "11000 Medicine details", scraped from 1mg.com): **no licence
  stated**; check the source before redistributing.

## Known limits

- Uses / side effects were run-together phrase lists in the source; the split on capitalised words
  is heuristic (a lower-case explanation stays attached to its phrase).
- A clinical profile (uses + side effects) can fit several products; the answer names the product
  the item was built from.
- Salt / ester forms map to the parent DrugBank entry (e.g. metoprolol succinate -> Metoprolol).
"""
