"""No leakage into the shipped base: the corpus holds no held-out question, the chain refuses a base checked
against other held-out files or splits, and the search finds planted exact and near duplicates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from healthai.config import load_config
from healthai.errors import ModelError
from healthai.model.base_corpus import find_leaks, held_out_universe, read_pairs
from healthai.model.base_stage import check_held_out

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def universe():
    return held_out_universe(load_config())


@pytest.fixture(scope="module")
def medquad():
    return read_pairs(REPO / "data" / "raw" / "medquad.jsonl.gz")


def test_the_base_corpus_holds_no_held_out_question(universe, medquad):
    # every question a demo split can draw (all curation inputs) and every triage-set question
    # (one HealthCareMagic line has no usable question: the readers reject it)
    assert len(universe.questions) == 2000 + 81 + 5452 + 304
    assert find_leaks(universe.questions, medquad, threshold=0.7) == []


def test_the_search_finds_exact_and_near_duplicates_and_copies_inside_answers(universe, medquad):
    held = [universe.questions[0], universe.questions[2100], universe.questions[-1]]
    words = held[1].split()
    paraphrase = " ".join(words[:-3] + ["please", "help", "me"])        # a few words changed at the end
    planted = medquad[:50] + [
        (held[0].upper().replace(",", " ,"), "An answer."),              # exact after normalisation
        ("What should I do?", f"A patient wrote: {held[2]} Our reply follows."),   # copied into an answer
        (paraphrase, "Another answer."),
    ]
    leaks = find_leaks(held, planted, threshold=0.7)
    found = {(leak["corpus"], leak["held_out"], leak["kind"]) for leak in leaks}
    assert (50, 0, "exact") in found and (51, 2, "near") in found and (52, 1, "near") in found
    assert {leak["corpus"] for leak in leaks} == {50, 51, 52}            # the 50 MedQuAD pairs are clean


def _record(universe, **change) -> dict:
    return {"fingerprint": universe.fingerprint, "files": dict(universe.files), "questions": len(universe.questions),
            **change}


def test_a_base_checked_against_other_held_out_files_is_refused_naming_make_base(universe, project_dir, tmp_path):
    # project_dir: a fresh project without splits (a demo's runs/3.merge would be checked too)
    base = tmp_path / "base"
    base.mkdir()
    (base / "held_out.json").write_text(json.dumps(_record(universe)), encoding="utf-8")
    cfg = load_config()
    assert check_held_out(base, cfg)["fingerprint"] == universe.fingerprint
    # a subset of the inputs (the CI profile's two files) was checked too: accepted
    ci = load_config()
    ci.curation.inputs = ci.curation.inputs[:2]
    check_held_out(base, ci)
    # a changed triage set: never checked
    triage = tmp_path / "triage.jsonl"
    shutil.copyfile(REPO / "data" / "triage" / "triage_labels.jsonl", triage)
    with open(triage, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "new", "question": "Crushing chest pain now.", "urgent": True}) + "\n")
    cfg.inference.triage_set = str(triage)
    with pytest.raises(ModelError) as err:
        check_held_out(base, cfg)
    line = err.value.one_line()
    assert "make base" in line and "triage.jsonl" in line and universe.fingerprint[:12] in line
    assert "\n" not in line
    # no record at all
    (base / "held_out.json").unlink()
    with pytest.raises(ModelError, match="no held_out.json.*make base"):
        check_held_out(base, load_config())


def test_splits_holding_records_of_another_source_are_refused(universe, project_dir, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "held_out.json").write_text(json.dumps(_record(universe)), encoding="utf-8")
    merge = project_dir / "3.merge"
    merge.mkdir()
    for split in ("val", "test"):
        (merge / f"{split}.jsonl").write_text("{}\n", encoding="utf-8")
        (merge / f"{split}.meta.jsonl").write_text(json.dumps({"id": "x", "source": "icliniq_2k_chat"}) + "\n",
                                                   encoding="utf-8")
    check_held_out(base, load_config())
    (merge / "test.meta.jsonl").write_text(json.dumps({"id": "y", "source": "my_clinic_notes"}) + "\n",
                                           encoding="utf-8")
    with pytest.raises(ModelError, match="my_clinic_notes.*make base"):
        check_held_out(base, load_config())
