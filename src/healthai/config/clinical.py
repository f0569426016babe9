"""Stage 4 (clinical-reasoning dataset) settings."""

from __future__ import annotations

import string
from dataclasses import dataclass

from healthai.config.loader import field

TASK_TYPES = ("clinical_profile", "therapeutic_reasoning", "pharmacological_inventory", "pharmacodynamics")
"""The four QA task types (keys of the template tables)."""

TEMPLATE_FIELDS = frozenset({"medicine", "ingredients", "ingredient_names", "n_ingredients", "uses",
                             "side_effects", "inventory", "mechanism", "indication"})
"""Placeholders a template may use; every value comes from the tables (see healthai.data.clinical.tasks)."""


@dataclass
class ClinicalConfig:
    """Pharmacological tables -> clinical-reasoning Q&A (stage 4)."""

    medicines_csv: str = "data/raw/Medicine_Details.csv"
    """Commercial medicine catalogue."""
    drugbank_csv: str = "data/raw/drugbank_vocabulary.csv"
    """DrugBank open vocabulary (CC0)."""
    drug_features_csv: str = "data/raw/primekg_drug_features_subset.csv"
    """PrimeKG drug features (DrugBank-derived text, CC BY-NC)."""
    train_ratio: float = field(0.8, min=0.0, max=1.0)
    """Share of split keys in train."""
    dev_ratio: float = field(0.1, min=0.0, max=1.0)
    """Share of split keys in dev (test gets the rest)."""
    seed: int = field(42, min=0)
    """Seed for the group split, item sampling and template choice."""
    required_columns: list[str] = field(["Medicine Name", "Composition", "Uses", "Side_effects"])
    """Columns the tasks need; a record with any of them empty is dropped as incomplete."""
    drop_columns: list[str] = field(["Manufacturer", "Excellent Review %", "Average Review %", "Poor Review %",
                                     "Image URL"])
    """Columns irrelevant to the tasks, dropped after the exact-duplicate check (absent ones are ignored)."""
    boilerplate_sentences: list[str] = field([
        "$name is thought to work", "It helps improve mood", "It is used to treat depression that is unresponsive",
        "You need to take it regularly", "You should not stop taking it"])
    """Openings of scraped advice sentences removed from Uses/Side_effects (each removed up to its full stop)."""
    phrase_connectors: list[str] = field(["of", "and", "or", "in", "the", "to", "with", "due", "for", "on", "by",
                                          "from", "at", "a", "an", "as", "after", "during", "like", "caused",
                                          "associated", "related", "including", "such"])
    """Lower-case words after which a capitalised word continues the phrase ("Treatment of Type 2 diabetes")."""
    salt_words: list[str] = field([
        "succinate", "tartrate", "maleate", "medoxomil", "proxetil", "hydrobromide", "hydrochloride",
        "dihydrochloride", "hcl", "oxalate", "gluconate", "mesylate", "mesilate", "besylate", "besilate",
        "acetate", "fumarate", "disoproxil", "sodium", "disodium", "potassium", "calcium", "magnesium", "zinc",
        "phosphate", "sulphate", "sulfate", "sulphonate", "sulfonate", "monohydrate", "dihydrate", "trihydrate",
        "decanoate", "butylbromide", "bromide", "chloride", "tosilate", "tosylate", "pamoate", "erbumine",
        "olamine", "acetonide", "diethylamine", "dipropionate", "propionate", "furoate", "valerate", "citrate",
        "nitrate", "lactate", "malate", "bitartrate", "hyclate", "trometamol", "tromethamine", "choline", "hydrogen",
        "anhydrous", "ip", "bp", "usp"])
    """Salt, ester, hydrate and pharmacopoeia words stripped (one at a time, from either end) before matching."""
    spelling_variants: dict[str, str] = field({
        # British / INN / Indian spellings
        "beclometasone": "beclomethasone", "tazobactum": "tazobactam", "trioxasalen": "trioxsalen",
        "chlorbutol": "chlorobutanol", "amoxycillin": "amoxicillin", "sulphate": "sulfate",
        "sulphonate": "sulfonate", "sulphur": "sulfur", "cephalexin": "cefalexin", "lignocaine": "lidocaine",
        "frusemide": "furosemide", "glibenclamide": "glyburide", "dicyclomine": "dicycloverine",
        "levo-carnitine": "levocarnitine", "d-chiro inositol": "d-chiro-inositol",
        "pyridoxal-5-phosphate": "pyridoxal phosphate", "phenyl mercuric nitrate": "phenylmercuric nitrate",
        "iso amyl 2-cynoacrylate": "isopentyl 2-cyanoacrylate", "interferon alpha 2b": "interferon alfa-2b",
        "gamma linolenic acid": "gamolenic acid", "zinc sulphate monohydrate": "zinc sulfate",
        # trade / traditional names -> DrugBank name
        "gamma benzene hexachloride": "lindane", "hyoscine butylbromide": "butylscopolamine",
        "divalproex": "valproic acid", "levocloperastine": "cloperastine", "insulin isophane": "insulin human",
        "nph": "insulin human", "albumin": "albumin human", "silymarin": "milk thistle",
        "methyl sulfonyl methane": "dimethyl sulfone", "l-methyl folate": "levomefolic acid",
        "cetrimide": "cetrimonium", "iron isomaltoside": "ferric derisomaltose", "calcium leucovorin": "leucovorin",
        "zinc carnosine": "polaprezinc", "choline fenofibrate": "fenofibric acid",
        "l glutathione reduced": "glutathione", "recombinant follicle stimulating hormone": "follitropin",
        "anti rh d immunoglobulin": "human rho(d) immune globulin", "human gamma globulin": "human immunoglobulin g",
        "colloidal bismuth subcitrate": "bismuth subcitrate potassium",
        "alpha glycerylphosphorylcholine": "choline alfoscerate", "allium cepa": "onion",
        "extractum cepae-cepalin": "onion", "dill oil": "dill", "fennel oil": "fennel", "oleum lini": "linseed oil",
        "ichthyol pale": "ichthammol", "ichtyolammonium": "ichthammol", "lactobacillus sporogenes":
        "bacillus coagulans", "capsaicin based rubefacients": "capsaicin", "silver colloid": "silver",
        "clostridium botulinum type a toxin-haemagglutinin complex": "botulinum toxin type a",
        # vaccines and immune globulins
        "human rabies immunoglobulin": "rabies immune globulin, human",
        "equine rabies immunoglobulin": "rabies immune globulin, equine",
        "varicella vaccine attenuated": "varicella zoster vaccine (live/attenuated)",
        "measles vaccine": "measles virus vaccine live attenuated", "rubella vaccine": "rubella virus vaccine",
        "freeze-dried live attenuated hepatitis a vaccine": "hepatitis a vaccine (live, attenuated)",
        "purified vi polysaccharide typhoid vaccine": "typhoid vi polysaccharide vaccine",
        "salmonella typhi vaccine": "typhoid vaccine", "bacillus calmette-guerin": "bcg vaccine",
        "bacillus calmette-guerin strain": "bcg vaccine",
        "poliomyelitis virus type 1": "poliovirus type 1 antigen (formaldehyde inactivated)",
        "poliomyelitis virus type 2": "poliovirus type 2 antigen (formaldehyde inactivated)",
        "poliomyelitis virus type 3": "poliovirus type 3 antigen (formaldehyde inactivated)",
        "inactivated japanese encephalitis virus protein": "japanese encephalitis vaccine, inactivated, adsorbed",
        "haemophilus type b conjugate vaccine": "haemophilus influenzae b polysaccharide-tetanus conjugate"})
    """British/INN spellings and trade synonyms -> the DrugBank spelling (whole names or single words)."""
    max_items_per_task: int = field(750, min=1)
    """Upper bound on items per task type before the leakage filter (keeps CPU fine-tuning feasible)."""
    max_list_items: int = field(6, min=1)
    """Uses / side effects quoted in one question or answer."""
    max_text_sentences: int = field(2, min=1)
    """Sentences of DrugBank mechanism / indication text quoted per ingredient."""
    system_prompt: str = ("You are a clinical pharmacology assistant for health professionals. Answer only with "
                          "facts from the medicine catalogue and DrugBank, name the active ingredients, and say "
                          "when the tables hold no information. Do not give personal dosing advice.")
    """System message of every item."""
    question_templates: dict[str, list[str]] = field({
        "clinical_profile": [
            "A medicine is used for {uses}. Its reported side effects include {side_effects}. Which product in "
            "the catalogue matches this profile, and what are its active ingredients?",
            "Identify the medicine: indications {uses}; side effects {side_effects}. What does it contain?",
            "Which catalogued medicine is indicated for {uses} and lists {side_effects} as side effects? "
            "Name it and its composition.",
        ],
        "therapeutic_reasoning": [
            "A clinician is considering {medicine} ({ingredients}). What is it used for, and which side effects "
            "should be monitored?",
            "Why would {medicine} be prescribed, and what adverse effects should the patient be told about?",
            "Explain the therapeutic role of {medicine}, which contains {ingredient_names}, and the side effects "
            "to watch for.",
        ],
        "pharmacological_inventory": [
            "List the active ingredients of {medicine} with their strengths.",
            "What is the composition of {medicine}? Give each active ingredient, its strength and its DrugBank "
            "identifier.",
            "Break down {medicine} into its active pharmaceutical ingredients.",
        ],
        "pharmacodynamics": [
            "How do the active ingredients of {medicine} work?",
            "Describe the mechanism of action behind {medicine} ({ingredient_names}).",
            "What is the pharmacological mechanism of {medicine}?",
        ],
    })
    """User-question phrasings per task type (one is drawn per item); placeholders are table values."""
    answer_templates: dict[str, list[str]] = field({
        "clinical_profile": ["This profile matches {medicine}, which contains {ingredients}."],
        "therapeutic_reasoning": [
            "{medicine} ({ingredients}) is used for {uses}. Side effects to monitor include {side_effects}."
            "{indication}"],
        "pharmacological_inventory": [
            "{medicine} contains {n_ingredients} active ingredient(s):\n{inventory}"],
        "pharmacodynamics": ["{medicine} contains {ingredient_names}.\n{mechanism}"],
    })
    """Answer frames per task type; every placeholder is filled from the tables only."""

    def validate(self) -> None:
        if self.train_ratio + self.dev_ratio > 1.0:
            raise ValueError("train_ratio + dev_ratio must be <= 1 (test gets the rest)")
        for name, table in (("question_templates", self.question_templates),
                            ("answer_templates", self.answer_templates)):
            unknown_tasks = set(table) - set(TASK_TYPES)
            if unknown_tasks:
                raise ValueError(f"{name}: unknown task type(s) {sorted(unknown_tasks)} (known: {list(TASK_TYPES)})")
            for task in TASK_TYPES:
                if not table.get(task):
                    raise ValueError(f"{name}.{task} needs at least one template")
                for text in table[task]:
                    try:
                        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
                    except ValueError as exc:
                        raise ValueError(f"{name}.{task}: bad template {text!r}: {exc}") from None
                    bad = fields - TEMPLATE_FIELDS
                    if bad:
                        raise ValueError(f"{name}.{task}: unknown placeholder(s) {sorted(bad)} in {text!r} "
                                         f"(known: {sorted(TEMPLATE_FIELDS)})")
