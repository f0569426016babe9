"""The four QA task generators: every answer is assembled from table values only.

    facts = medicine_facts(medicine, matches, features, cfg)
    item = make_item("pharmacological_inventory", facts, cfg)     # None when the row cannot support the task

Task types (question phrasings and answer frames live in `clinical.question_templates` /
`clinical.answer_templates`):

- clinical_profile: uses + side effects -> which product and what it contains;
- therapeutic_reasoning: product -> what it is used for, what to monitor (+ DrugBank indication);
- pharmacological_inventory: product -> each ingredient, strength, DrugBank id;
- pharmacodynamics: product -> DrugBank mechanism of action / pharmacodynamics per ingredient
  (only where the PrimeKG subset has that text).

The few fixed connecting words below (`INVENTORY_LINE` …) carry no facts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from healthai.data.clinical.matching import Match, first_sentences
from healthai.data.clinical.tables import Ingredient, Medicine
from healthai.config.clinical import TASK_TYPES

TASK_CODES = {"clinical_profile": "cp", "therapeutic_reasoning": "tr", "pharmacological_inventory": "pi",
              "pharmacodynamics": "pd"}
INVENTORY_LINE = "- {name}: {strength} ({drugbank})"
NO_STRENGTH = "strength not stated"
NO_MATCH = "no DrugBank match"
MECHANISM_LINE = "- {drug} ({db_id}): {text}"
PHARMACODYNAMICS = " Pharmacodynamics: {text}"
INDICATION = " DrugBank indication for {drug}: {text}"


@dataclass
class DrugText:
    """DrugBank-derived text for one drug (from the PrimeKG feature table)."""

    name: str
    mechanism: str = ""
    pharmacodynamics: str = ""
    indication: str = ""


@dataclass
class Facts:
    """Everything a generator may say about one product, already formatted."""

    medicine: Medicine
    matches: list[Match | None]
    drugbank_ids: list[str]
    values: dict[str, str]
    mechanism_ids: list[str] = field(default_factory=list)
    """DrugBank ids whose mechanism / pharmacodynamics text the item quotes or could quote."""


def join_list(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _strength(ing: Ingredient) -> str:
    if ing.strength is None:
        return NO_STRENGTH
    sep = "" if (ing.unit or "").startswith("%") else " "
    return f"{ing.strength}{sep}{ing.unit}" if ing.unit else ing.strength


def medicine_facts(med: Medicine, matches: list[Match | None], features: dict[str, DrugText], cfg) -> Facts:
    """Format the table values the templates may use (see TEMPLATE_FIELDS in the config)."""
    n = cfg.max_list_items
    ids: list[str] = []
    for m in matches:
        if m and m.drugbank_id not in ids:
            ids.append(m.drugbank_id)
    inventory = []
    for ing, m in zip(med.ingredients, matches):
        drugbank = f"DrugBank {m.drugbank_id}, {m.drugbank_name}" if m else NO_MATCH
        inventory.append(INVENTORY_LINE.format(name=ing.name, strength=_strength(ing), drugbank=drugbank))
    mechanism_lines, indications, mech_ids = [], [], []
    for db_id in ids:
        text = features.get(db_id)
        if text is None:
            continue
        moa = first_sentences(text.mechanism, cfg.max_text_sentences)
        pd_text = first_sentences(text.pharmacodynamics, cfg.max_text_sentences)
        if moa or pd_text:
            mech_ids.append(db_id)
            line = MECHANISM_LINE.format(drug=text.name, db_id=db_id, text=moa or pd_text)
            if moa and pd_text:
                line += PHARMACODYNAMICS.format(text=pd_text)
            mechanism_lines.append(line)
        ind = first_sentences(text.indication, cfg.max_text_sentences)
        if ind:
            indications.append(INDICATION.format(drug=text.name, text=ind))
    values = {
        "medicine": med.name,
        "ingredients": join_list([i.label() for i in med.ingredients]),
        "ingredient_names": join_list([i.name for i in med.ingredients]),
        "n_ingredients": str(len(med.ingredients)),
        "uses": join_list(med.uses[:n]),
        "side_effects": join_list(med.side_effects[:n]),
        "inventory": "\n".join(inventory),
        "mechanism": "\n".join(mechanism_lines),
        "indication": "".join(indications),
    }
    return Facts(medicine=med, matches=matches, drugbank_ids=ids, values=values, mechanism_ids=mech_ids)


def supports(task: str, facts: Facts) -> bool:
    """Can this product yield an item of `task` from table facts alone?"""
    if task == "pharmacodynamics":
        return bool(facts.values["mechanism"])
    if task == "pharmacological_inventory":
        return bool(facts.medicine.ingredients)
    return bool(facts.medicine.uses and facts.medicine.side_effects)


def make_item(task: str, facts: Facts, cfg, seed: int | None = None) -> dict | None:
    """One {"messages": [system, user, assistant]} item plus its meta, or None if unsupported."""
    if task not in TASK_TYPES:
        raise ValueError(f"unknown task type {task!r}")
    if not supports(task, facts):
        return None
    rng = random.Random(f"{cfg.seed if seed is None else seed}:{task}:{facts.medicine.line}")
    q_index = rng.randrange(len(cfg.question_templates[task]))
    a_index = rng.randrange(len(cfg.answer_templates[task]))
    question = cfg.question_templates[task][q_index].format(**facts.values).strip()
    answer = cfg.answer_templates[task][a_index].format(**facts.values).strip()
    med = facts.medicine
    return {
        "messages": [{"role": "system", "content": cfg.system_prompt},
                     {"role": "user", "content": question},
                     {"role": "assistant", "content": answer}],
        "meta": {
            "id": f"clin-{TASK_CODES[task]}-{med.line}",
            "task_type": task,
            "drugbank_ids": facts.drugbank_ids,
            "ingredients": [i.name for i in med.ingredients],
            "mechanism_ids": facts.mechanism_ids,
            "medicine": med.name,
            "source_rows": [med.line],
            "template": [q_index, a_index],
        },
    }


def generate_items(all_facts: list[Facts], cfg) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """Items of every task type, at most `max_items_per_task` each, identical Q/A pairs dropped.

    Products are drawn per task in a seeded order, so the cap samples across splits.
    Returns the items and per-task counts (eligible, duplicates, capped, generated).
    """
    items: list[dict] = []
    counts: dict[str, dict[str, int]] = {}
    for t_index, task in enumerate(TASK_TYPES):
        eligible = [f for f in all_facts if supports(task, f)]
        order = list(range(len(eligible)))
        random.Random(cfg.seed * 1009 + t_index).shuffle(order)
        seen: set[tuple[str, str]] = set()
        made = dup = 0
        for i in order:
            if made >= cfg.max_items_per_task:
                break
            item = make_item(task, eligible[i], cfg)
            key = (item["messages"][1]["content"], item["messages"][2]["content"])
            if key in seen:
                dup += 1
                continue
            seen.add(key)
            items.append(item)
            made += 1
        counts[task] = {"eligible": len(eligible), "duplicates": dup, "generated": made,
                        "not_sampled": len(eligible) - made - dup}
    return items, counts
