"""Stage 4 (clinical reasoning): tables, DrugBank matching, group split, task generators, leakage, the stage."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from healthai.data.clinical.leakage import ingredients_in_splits, remove_mechanism_leaks
from healthai.data.clinical.matching import Match, Matcher, build_index, first_sentences, match_name, parse_feature_name
from healthai.data.clinical.splits import assign_splits, split_key
from healthai.data.clinical.stage import build_clinical_dataset
from healthai.data.clinical.tables import Medicine, clean_medicines, parse_composition, read_csv_rows, remove_boilerplate, split_phrases
from healthai.data.clinical.tasks import DrugText, generate_items, make_item, medicine_facts
from healthai.config import REPO_DIR, load_config
from healthai.config.clinical import TASK_TYPES, ClinicalConfig
from healthai.errors import ConfigError, InputError

CFG = ClinicalConfig()
RAW = REPO_DIR / "data" / "raw"
HEADER = ["Medicine Name", "Composition", "Uses", "Side_effects", "Manufacturer", "Excellent Review %",
          "Average Review %", "Poor Review %"]

# A small catalogue: real lines from Medicine_Details.csv plus hand-made edge cases.
CATALOGUE_ROWS = [
    # real: two-ingredient product, double spaces around '+'
    ["Augmentin 625 Duo Tablet", "Amoxycillin  (500mg) +  Clavulanic Acid (125mg)",
     "Treatment of Bacterial infections", "Vomiting Nausea Diarrhea Mucocutaneous candidiasis",
     "Glaxo SmithKline Pharmaceuticals Ltd", "47", "35", "18"],
    # real: same brand word + same base composition, other strength -> same split key as the row above
    ["Augmentin 375 Tablet", "Amoxycillin  (250mg) +  Clavulanic Acid (125mg)",
     "Treatment of Bacterial infections", "Vomiting Nausea Diarrhea Mucocutaneous candidiasis",
     "Glaxo SmithKline Pharmaceuticals Ltd", "40", "40", "20"],
    # real: glued "Treatment of" phrases
    ["Aciloc 150 Tablet", "Ranitidine (150mg)",
     "Treatment of Gastroesophageal reflux disease (Acid reflux)Treatment of Peptic ulcer disease",
     "Headache Diarrhea Gastrointestinal disturbance", "Cadila Pharmaceuticals Ltd", "34", "37", "29"],
    # real: salt form (metoprolol succinate)
    ["Metolar XR 50 Tablet", "Metoprolol Succinate (47.5mg)", "Treatment of Hypertension (high blood pressure)",
     "Tiredness Dizziness Headache Slow heart rate", "Cipla Ltd", "30", "40", "30"],
    # real: 3-ingredient syrup with mg/5ml strengths
    ["Ascoril LS Syrup", "Ambroxol (30mg/5ml) + Levosalbutamol (1mg/5ml) + Guaifenesin (50mg/5ml)",
     "Treatment of Cough with mucus", "Nausea Vomiting Diarrhea Upset stomach", "Glenmark Pharmaceuticals Ltd",
     "24", "41", "35"],
    # real: paracetamol (a DrugBank synonym of acetaminophen) under another brand
    ["Dolo 650 Tablet", "Paracetamol (650mg)", "Pain relief Treatment of Fever", "Nausea Vomiting Insomnia",
     "Micro Labs Ltd", "37", "44", "19"],
    ["Calpol 500mg Tablet", "Paracetamol (500mg)", "Pain relief Treatment of Fever", "Nausea Vomiting",
     "GSK", "30", "50", "20"],
    # hand-made: exact duplicate of the Dolo line (dropped as duplicate, line 8 -> 7)
    ["Dolo 650 Tablet", "Paracetamol (650mg)", "Pain relief Treatment of Fever", "Nausea Vomiting Insomnia",
     "Micro Labs Ltd", "37", "44", "19"],
    # hand-made: incomplete (no side effects)
    ["Emptyside Tablet", "Cetirizine (10mg)", "Treatment of Allergy", "", "X Ltd", "30", "40", "30"],
    # hand-made: composition with an empty ingredient between '+' signs
    ["Broken Tablet", "Cetirizine (10mg) +  + Ambroxol (30mg)", "Treatment of Allergy", "Sleepiness", "X Ltd",
     "30", "40", "30"],
    # hand-made: boilerplate advice (as in the real DO RE ME rows)
    ["Dosu 25mg Tablet", "Dosulepin (25mg)",
     "Treatment of Anxiety disorderTreatment of $name is thought to work by affecting the balance of certain "
     "chemicals (such as serotonin) in the brain. You need to take it regularly as it is prescribed for it to be "
     "most effective and should not stop taking it suddenly. Depression",
     "Dryness in mouth Weight gain", "Intas Pharmaceuticals Ltd", "44", "56", "0"],
]


def write_catalogue(path: Path, rows=CATALOGUE_ROWS, extra_lines: list[str] = ()) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
        for line in extra_lines:
            fh.write(line + "\n")
    return path


@pytest.fixture(scope="module")
def index():
    frame = pd.read_csv(RAW / "drugbank_vocabulary.csv", dtype=str, keep_default_na=False)
    return build_index(frame, CFG.salt_words)


# -- composition ----------------------------------------------------------------------------------

def test_parse_composition_combinations_and_units():
    ings = parse_composition("Amoxycillin  (500mg) +  Clavulanic Acid (125mg)")
    assert [(i.name, i.strength, i.unit) for i in ings] == [("Amoxycillin", "500", "mg"),
                                                            ("Clavulanic Acid", "125", "mg")]
    assert [i.base for i in ings] == ["amoxycillin", "clavulanic acid"]
    cases = {
        "Formoterol (6mcg) + Fluticasone Propionate (100mcg)": [("Formoterol", "6", "mcg"),
                                                               ("Fluticasone Propionate", "100", "mcg")],
        "Ketoconazole (2% w/v) + Coal Tar (2% w/v)": [("Ketoconazole", "2", "% w/v"), ("Coal Tar", "2", "% w/v")],
        "Insulin Isophane (40IU)": [("Insulin Isophane", "40", "IU")],
        "Chlorpheniramine Maleate (4mg/5ml)": [("Chlorpheniramine Maleate", "4", "mg/5ml")],
        "Lactobacillus (60Million spores)": [("Lactobacillus", "60", "Million spores")],
        "Collagen Peptide (NA)": [("Collagen Peptide", None, None)],          # NA = no strength given
        "Bevacizumab": [("Bevacizumab", None, None)],                          # no parenthesis at all
    }
    for text, expected in cases.items():
        assert [(i.name, i.strength, i.unit) for i in parse_composition(text)] == expected, text
    assert parse_composition("Ketoconazole (2% w/v)")[0].label() == "Ketoconazole 2% w/v"
    assert parse_composition("Metformin (500mg)")[0].label() == "Metformin 500 mg"


def test_parse_composition_keeps_name_parentheses_as_detail():
    (calc,) = parse_composition("Calcitonin (Salmon) (200IU)")
    assert (calc.base, calc.detail, calc.strength, calc.unit) == ("calcitonin", "Salmon", "200", "IU")
    (vit,) = parse_composition("Vitamin B3(Nicotinic Acid) (375mg)")
    assert (vit.base, vit.detail, vit.strength) == ("vitamin b3", "Nicotinic Acid", "375")


@pytest.mark.parametrize("text", ["", "Cetirizine (10mg) +  + Ambroxol (30mg)", "Cetirizine (10mg",
                                  "(10mg) + Ambroxol (30mg)"])
def test_parse_composition_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_composition(text)


# -- phrase lists and boilerplate --------------------------------------------------------------------

def test_split_phrases_real_lines():
    c = CFG.phrase_connectors
    # real Uses: glued "...(Acid reflux)Treatment of ..."
    assert split_phrases("Treatment of Gastroesophageal reflux disease (Acid reflux)Treatment of Peptic ulcer "
                         "disease", c) == ["Treatment of Gastroesophageal reflux disease (Acid reflux)",
                                           "Treatment of Peptic ulcer disease"]
    # real Uses: capital after a connector continues the phrase
    assert split_phrases("Treatment of Type 2 diabetes mellitus", c) == ["Treatment of Type 2 diabetes mellitus"]
    # real Side_effects of Avastin
    assert split_phrases("Rectal bleeding Taste change Headache Nosebleeds Back pain Dry skin High blood pressure "
                         "Protein in urine Inflammation of the nose", c) == [
        "Rectal bleeding", "Taste change", "Headache", "Nosebleeds", "Back pain", "Dry skin", "High blood pressure",
        "Protein in urine", "Inflammation of the nose"]
    # all-capital tokens never start a phrase ("Abnormal E C G"); duplicates dropped
    assert split_phrases("Nausea Abnormal E C G Nausea", c) == ["Nausea", "Abnormal E C G"]
    # leading space and "(COPD)" stay with their phrase
    assert split_phrases(" Chronic obstructive pulmonary disease (COPD) Asthma", c) == [
        "Chronic obstructive pulmonary disease (COPD)", "Asthma"]


def test_boilerplate_removed_and_phrases_rejoined():
    uses = CATALOGUE_ROWS[-1][2]
    cleaned = remove_boilerplate(uses, CFG.boilerplate_sentences)
    assert "$name" not in cleaned and "regularly" not in cleaned
    assert split_phrases(cleaned, CFG.phrase_connectors) == ["Treatment of Anxiety disorder",
                                                             "Treatment of Depression"]


# -- DrugBank matching -------------------------------------------------------------------------------

def test_match_handmade_vocabulary():
    # A hand-made vocabulary: a synonym hit, a salt form, an ester-only entry, an id tie.
    frame = pd.DataFrame({
        "DrugBank ID": ["DB00264", "DB00316", "DB04839", "DB09999", "DB00001"],
        "Common name": ["Metoprolol", "Acetaminophen", "Cyproterone acetate", "Acetaminophen", "Lepirudin"],
        "Synonyms": ["Metoprolol", "Paracetamol | APAP", "", "", ""],
    })
    idx = build_index(frame, CFG.salt_words)
    assert match_name("paracetamol", idx, CFG) == Match("DB00316", "Acetaminophen", "exact", "paracetamol")
    assert match_name("acetaminophen", idx, CFG).drugbank_id == "DB00316"        # lowest id wins a tie
    assert match_name("Metoprolol  Succinate", idx, CFG).method == "salt_stripped"
    assert match_name("cyproterone", idx, CFG).drugbank_id == "DB04839"           # DrugBank lists the ester only
    assert match_name("potassium", idx, CFG) is None
    assert match_name("unknownium", idx, CFG) is None


@pytest.mark.parametrize("name,db_id", [
    ("metoprolol succinate", "DB00264"),        # salt
    ("olmesartan medoxomil", "DB00275"),        # ester prodrug
    ("chlorpheniramine maleate", "DB01114"),    # salt
    ("beclometasone", "DB00394"),               # British spelling -> beclomethasone dipropionate
    ("sodium valproate", "DB00313"),            # salt-first name -> valproic acid
    ("tazobactum", "DB01606"),                  # misspelling in the catalogue
    ("paracetamol", "DB00316"),                 # synonym
    ("lidocaine/lignocaine", "DB00281"),        # "A/B" alternatives
    ("zinc sulphate monohydrate", "DB09322"),   # sulphate spelling + hydrate
    ("s-etodolac", "DB00749"),                  # stereo prefix
])
def test_match_real_vocabulary(index, name, db_id):
    m = match_name(name, index, CFG)
    assert m is not None and m.drugbank_id == db_id, (name, m)


def test_match_counter_ion_only_is_not_a_match(index):
    # "potassium magnesium citrate" must not become "Potassium" (the counter-ion, not the drug)
    assert match_name("potassium magnesium citrate", index, CFG) is None
    assert match_name("calcium citrate malate", index, CFG) is None


def test_match_combination_product_every_ingredient(index):
    matcher = Matcher(index, CFG)
    ings = parse_composition("Telmisartan (40mg) + Metoprolol Succinate (50mg) + Chlorthalidone (12.5mg)")
    assert [matcher(i.base, i.detail).drugbank_id for i in ings] == ["DB00966", "DB00264", "DB00310"]


def test_match_parenthesis_detail(index):
    (calc,) = parse_composition("Calcitonin (Salmon) (200IU)")
    assert match_name(calc.base, index, CFG, calc.detail).drugbank_id == "DB00017"   # Salmon calcitonin


def test_hand_checked_sample_precision_and_regression(index):
    # tests/fixtures/clinical_match_sample.csv: 100 random matches judged by hand (see the stage README)
    rows = list(csv.DictReader(open(REPO_DIR / "tests" / "fixtures" / "clinical_match_sample.csv",
                                    encoding="utf-8")))
    assert len(rows) == 100
    precision = sum(r["correct"] == "yes" for r in rows) / len(rows)
    assert precision >= 0.95
    matcher = Matcher(index, CFG)
    for r in rows:
        assert matcher(r["ingredient"]).drugbank_id == r["drugbank_id"], r


def test_match_rate_on_real_catalogue(index):
    frame = pd.read_csv(RAW / "Medicine_Details.csv", dtype=str, keep_default_na=False)
    names = {}
    for comp in frame["Composition"]:
        for ing in parse_composition(comp):
            names.setdefault(ing.base, ing.detail)
    matcher = Matcher(index, CFG)
    exact = sum(1 for n in names if n in index.by_name)
    matched = sum(1 for n, d in names.items() if matcher(n, d))
    assert len(names) == 1058
    assert exact / len(names) == pytest.approx(0.836, abs=0.001)     # SOURCES.md: plain lower-cased match
    assert matched / len(names) >= 0.92


def test_parse_feature_name_and_sentences():
    assert parse_feature_name("Fluorometholone is a solid.") == "Fluorometholone"
    assert parse_feature_name("", "Azilsartan medoxomil is approved and investigational.") == "Azilsartan medoxomil"
    assert parse_feature_name("", "") is None
    text = "Blocks beta-1 receptors [A1234, L56]. Lowers heart rate. Third sentence."
    assert first_sentences(text, 2) == "Blocks beta-1 receptors. Lowers heart rate."


# -- group split ---------------------------------------------------------------------------------------

def test_split_key_and_no_key_in_two_splits():
    assert split_key("Augmentin 625 Duo Tablet", ["clavulanic acid", "amoxycillin"]) == \
        "augmentin|amoxycillin+clavulanic acid"
    assert split_key("Augmentin 375 Tablet", ["amoxycillin", "clavulanic acid"]) == \
        split_key("Augmentin 625 Duo Tablet", ["clavulanic acid", "amoxycillin"])
    keys = [f"brand{i % 37}|drug{i % 11}" for i in range(2000)]
    assignment = assign_splits(keys, 0.8, 0.1, seed=7)
    assert set(assignment.values()) == {"train", "dev", "test"}
    assert assignment == assign_splits(list(reversed(keys)), 0.8, 0.1, seed=7)     # order-independent
    per_split = {}
    for k in keys:
        per_split.setdefault(assignment[k], set()).add(k)
    assert not (per_split["train"] & per_split["dev"]) and not (per_split["train"] & per_split["test"])
    share = sum(assignment[k] == "train" for k in keys) / len(keys)
    assert 0.7 < share < 0.9


# -- task generators -------------------------------------------------------------------------------------

def _facts(with_features: bool = True):
    med = Medicine(line=3, name="Augmentin 625 Duo Tablet", composition="",
                   ingredients=parse_composition("Amoxycillin (500mg) + Clavulanic Acid (125mg)"),
                   uses=["Treatment of Bacterial infections"], side_effects=["Vomiting", "Nausea", "Diarrhea"])
    matches = [Match("DB01060", "Amoxicillin", "variant", "amoxicillin"), None]
    features = {"DB01060": DrugText("Amoxicillin", mechanism="Inhibits cell wall synthesis. Binds PBPs. Third.",
                                    pharmacodynamics="Bactericidal.", indication="Treats otitis media.")}
    return medicine_facts(med, matches, features if with_features else {}, CFG)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


@pytest.mark.parametrize("task", TASK_TYPES)
def test_each_generator_answers_only_with_table_facts(task):
    facts = _facts()
    item = make_item(task, facts, CFG)
    assert item is not None
    system, user, assistant = item["messages"]
    assert [m["role"] for m in item["messages"]] == ["system", "user", "assistant"]
    # every answer word comes from the answer frames, the fixed connectors or the table values
    from healthai.data.clinical import tasks as t
    allowed = _words(" ".join(CFG.answer_templates[task]))
    allowed |= _words(" ".join([t.INVENTORY_LINE, t.NO_STRENGTH, t.NO_MATCH, t.MECHANISM_LINE,
                                t.PHARMACODYNAMICS, t.INDICATION, "and"]))
    allowed |= _words("Augmentin 625 Duo Tablet Amoxycillin 500 mg Clavulanic Acid 125 mg Bacterial infections "
                      "Treatment of Vomiting Nausea Diarrhea DB01060 Amoxicillin Inhibits cell wall synthesis. "
                      "Binds PBPs. Bactericidal. Treats otitis media. 2 DrugBank")
    assert _words(assistant["content"]) <= allowed, _words(assistant["content"]) - allowed
    assert "Third" not in assistant["content"]                      # max_text_sentences = 2
    meta = item["meta"]
    assert meta["task_type"] == task and meta["source_rows"] == [3] and meta["drugbank_ids"] == ["DB01060"]
    assert meta["ingredients"] == ["Amoxycillin", "Clavulanic Acid"]


def test_generator_specifics():
    facts = _facts()
    inv = make_item("pharmacological_inventory", facts, CFG)["messages"][2]["content"]
    assert "- Amoxycillin: 500 mg (DrugBank DB01060, Amoxicillin)" in inv
    assert "- Clavulanic Acid: 125 mg (no DrugBank match)" in inv
    pdx = make_item("pharmacodynamics", facts, CFG)["messages"][2]["content"]
    assert "Inhibits cell wall synthesis. Binds PBPs." in pdx and "Pharmacodynamics: Bactericidal." in pdx
    tr = make_item("therapeutic_reasoning", facts, CFG)["messages"][2]["content"]
    assert "DrugBank indication for Amoxicillin: Treats otitis media." in tr
    # no DrugBank text -> no pharmacodynamics item, and no indication sentence
    bare = _facts(with_features=False)
    assert make_item("pharmacodynamics", bare, CFG) is None
    assert "indication" not in make_item("therapeutic_reasoning", bare, CFG)["messages"][2]["content"]


def test_generate_items_caps_and_deduplicates():
    cfg = ClinicalConfig(max_items_per_task=1)
    items, counts = generate_items([_facts(), _facts()], cfg)
    assert sorted(i["meta"]["task_type"] for i in items) == sorted(TASK_TYPES)
    assert all(c["generated"] == 1 for c in counts.values())


def test_config_rejects_unknown_placeholder():
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_config(overrides=["clinical.answer_templates={clinical_profile: ['{dose}'], therapeutic_reasoning: "
                               "['x'], pharmacological_inventory: ['x'], pharmacodynamics: ['x']}"])


# -- leakage filter --------------------------------------------------------------------------------------

def test_leakage_filter_on_handmade_tables():
    split_rows = [("train", ["DB1", "DB2"]), ("dev", ["DB3"]), ("test", ["DB4", "DB1"]), ("test", ["DB5"])]
    seen = ingredients_in_splits(split_rows)
    assert seen == {"DB1", "DB2", "DB3"}
    test_items = [
        {"meta": {"task_type": "pharmacodynamics", "mechanism_ids": ["DB1", "DB4"]}},   # DB1 also in train -> out
        {"meta": {"task_type": "clinical_profile", "mechanism_ids": ["DB1"]}},          # any task type -> out
        {"meta": {"task_type": "pharmacodynamics", "mechanism_ids": ["DB5"]}},          # unseen drug -> kept
        {"meta": {"task_type": "pharmacological_inventory", "mechanism_ids": []}},      # no mechanism -> kept
    ]
    kept, removed, per_task = remove_mechanism_leaks(test_items, seen)
    assert [i["meta"]["mechanism_ids"] for i in kept] == [["DB5"], []]
    assert per_task == {"pharmacodynamics": 1, "clinical_profile": 1}
    assert "DB1" in removed[0]["meta"]["leak_reason"]


# -- bad rows and the stage -----------------------------------------------------------------------------

def test_read_csv_rows_reports_lines(tmp_path):
    path = write_catalogue(tmp_path / "m.csv", CATALOGUE_ROWS[:2],
                           extra_lines=['"Multi\nline Tablet",Cetirizine (10mg),Allergy,Sleepiness,X,1,2,97',
                                        "Too,few,fields"])
    header, rows, bad = read_csv_rows(path, required=CFG.required_columns)
    assert [r.line for r in rows] == [2, 3, 4]          # the quoted field spans lines 4-5, starts on 4
    assert [(b.line, b.reason) for b in bad] == [(6, "bad_field_count")]
    with pytest.raises(InputError, match="missing column"):
        read_csv_rows(path, required=["Medicine Name", "Dosage"])


def test_clean_medicines_reasons(tmp_path):
    _, rows, _ = read_csv_rows(write_catalogue(tmp_path / "m.csv"), required=CFG.required_columns)
    kept, rejected, counts = clean_medicines(rows, CFG, "m.csv")
    reasons = {(r.line, r.reason) for r in rejected}
    assert reasons == {(9, "duplicate"), (10, "incomplete"), (11, "bad_composition")}
    assert counts["duplicate"] == 1 and counts["boilerplate_removed"] == 1
    assert "Manufacturer" in rejected[0].record           # the original record is quarantined whole
    assert len(kept) == len(CATALOGUE_ROWS) - 3


def _stage_cfg(csv_path: Path, *extra: str):
    return load_config(overrides=[f"clinical.medicines_csv={csv_path}", "clinical.max_items_per_task=50",
                                  "clinical.train_ratio=0.5", "clinical.dev_ratio=0.25",
                                  "project.max_bad_fraction=0.2", *extra])


def test_stage_outputs_conservation_and_alignment(project_dir, tmp_path, capsys):
    path = write_catalogue(tmp_path / "m.csv", extra_lines=["Too,few,fields"])
    manifest = build_clinical_dataset(_stage_cfg(path))
    out = project_dir / "4.clinical"
    assert manifest["counts"] == {"in": 12, "kept": 8, "rejected": 4}
    rejected = [json.loads(l) for l in (out / "rejected.jsonl").read_text().splitlines()]
    assert {(r["source_line"], r["reason"]) for r in rejected} == {
        (13, "bad_field_count"), (9, "duplicate"), (10, "incomplete"), (11, "bad_composition")}
    assert all(r["id"] == f"{path}:{r['source_line']}" for r in rejected)
    keys: dict[str, str] = {}
    n_items = 0
    for split in ("train", "dev", "test"):
        data = [json.loads(l) for l in (out / f"{split}.jsonl").read_text().splitlines()]
        meta = [json.loads(l) for l in (out / f"{split}.meta.jsonl").read_text().splitlines()]
        assert len(data) == len(meta)
        n_items += len(data)
        for d, m in zip(data, meta):
            assert list(d) == ["messages"] and [x["role"] for x in d["messages"]] == ["system", "user", "assistant"]
            assert m["split"] == split and m["medicine"] in d["messages"][1]["content"] + d["messages"][2]["content"]
            assert keys.setdefault(m["split_key"], split) == split           # no key in two splits
            assert set(m) >= {"id", "split_key", "task_type", "drugbank_ids", "ingredients", "source_rows"}
    assert n_items > 0 and keys["augmentin|amoxycillin+clavulanic acid"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"]["duplicate"] == 1 and set(stats["leakage_removed"]) == set(TASK_TYPES)
    assert "CC0" in (out / "dataset_card.md").read_text() and "CC BY-NC 4.0" in (out / "dataset_card.md").read_text()
    assert "--- CLINICAL DATASET STATISTICS ---" in capsys.readouterr().out
    assert (out / "unmatched.csv").read_text().startswith("ingredient,occurrences")
    # a rerun with unchanged inputs and config is a no-op
    again = build_clinical_dataset(_stage_cfg(path))
    assert again["fingerprint"] == manifest["fingerprint"]
    assert "up to date" in capsys.readouterr().out


def test_entry_script_one_line_error_when_too_many_bad_rows(project_dir, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bcd", REPO_DIR / "4.Clinical-reasoning" / "build_clinical_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = write_catalogue(tmp_path / "bad.csv", CATALOGUE_ROWS[:2], extra_lines=["a,b", "c,d", "e,f"])
    code = mod.main(["--set", f"clinical.medicines_csv={path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: [clinical]") and f"{path}" in err[-1] and "bad_field_count" in err[-1]
    assert "Traceback" not in "\n".join(err)


# -- through sbatch (last) ------------------------------------------------------------------------------

@pytest.mark.slurm
@pytest.mark.slow
def test_stage_through_sbatch(slurm_cluster, tmp_path):
    from slurm_helpers import sbatch_and_wait, slurm_env

    path = write_catalogue(tmp_path / "m.csv")
    project = tmp_path / "project"
    stage = REPO_DIR / "4.Clinical-reasoning"
    env = slurm_env({"HEALTHAI_PROJECT_DIR": str(project), "SBATCH_PARTITION": "normal-x86"})
    result = sbatch_and_wait(stage / "run-clinical.sh", cwd=stage, env=env, timeout=300,
                             args=("--set", f"clinical.medicines_csv={path}", "--set",
                                   "clinical.max_items_per_task=20"))
    try:
        assert result.state == "COMPLETED" and result.exit_code == 0, result.log_text
        assert "--- CLINICAL DATASET STATISTICS ---" in result.log_text
        manifest = json.loads((project / "4.clinical" / "manifest.json").read_text())
        assert manifest["slurm_job_id"] == result.job_id
        assert manifest["counts"]["kept"] == len(CATALOGUE_ROWS) - 3
    finally:
        if result.log_path:
            result.log_path.unlink(missing_ok=True)
