"""Stage 2 (filter, stratified sampling, rewriting) settings."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field

REWRITER_SYSTEM = (
    "You are a medical answer rewriter. Rewrite the doctor's answer to the patient's question "
    "in 1-5 sentences. Start directly with actionable advice, or with \"Seek emergency care "
    "immediately.\" if the situation is urgent. Do not include reasoning, hedging, bullet points "
    "or diagnostic claims. Never say \"don't worry\", \"no need to worry\", \"hope this helps\" or "
    "\"let me know\". END EXACTLY with \"Please consult a doctor for more personalized medical "
    "advice.\" Preserve the safety guidance of the original answer and add no new medical claims. "
    "Output only JSON: {\"rewritten\": \"...\", \"is_urgent\": true/false}"
)

ASSISTANT_SYSTEM = (
    "You are a helpful medical assistant. Give short, safe, actionable advice in 1-5 sentences. "
    "If the situation may be an emergency, start with \"Seek emergency care immediately.\" "
    "Always end with \"Please consult a doctor for more personalized medical advice.\""
)


@dataclass
class Category:
    """One sampling category of the workshop table."""

    name: str = ""
    """Category name as written to meta.category."""
    weight: float = field(0.0, min=0.0, max=1.0)
    """Share of the stratified sample."""
    keywords: list[str] = field(default_factory=list)
    """Word-boundary, case-insensitive keywords that put a question in this category."""


@dataclass
class LLMRewriterConfig:
    """Generation settings of the `llm` rewriter backend (transformers generate)."""

    batch_size: int = field(8, min=1)
    """Prompts per generate call (left-padded; a batch of one is never padded)."""
    max_new_tokens: int = field(200, min=8)
    """Longest generated reply (tokens); a 1-5 sentence JSON answer needs ~120."""
    do_sample: bool = False
    """False: greedy decoding on the first try (deterministic). Retries always sample."""
    temperature: float = field(0.7, min=0.01, max=2.0)
    """Sampling temperature for retries (and for the first try when do_sample is true)."""
    top_p: float = field(0.9, min=0.01, max=1.0)
    """Nucleus sampling mass for sampled tries."""
    retries: int = field(2, min=0)
    """Extra sampled tries for a record whose reply is not valid JSON or fails validation."""
    fallback: str = field("rules", choices=("rules", "reject"))
    """What happens to a record still invalid after the retries: rules rewrite, or rejected.jsonl."""
    prompt_template: str = "Patient question:\n{question}\n\nDoctor's answer:\n{answer}"
    """User message sent to the rewriter ({question}, {answer} filled in)."""
    max_answer_chars: int = field(2000, min=100)
    """Longer answers/questions are cut to this many characters in the prompt."""


@dataclass
class FilterConfig:
    """Quality rules, the workshop's category table and the rewriter (stage 2)."""

    min_words: int = field(25, min=1)
    """Shortest accepted answer (words)."""
    max_words: int = field(150, min=1)
    """Longest accepted answer (words)."""
    sample_size: int = field(500, min=1)
    """Size of the stratified sample that is rewritten."""
    categories: list[Category] = field(default_factory=lambda: [
        Category("urgent symptoms", 0.25, ["chest pain", "shortness of breath", "emergency", "stroke"]),
        Category("pediatric", 0.15, ["child", "baby", "toddler", "year old"]),
        Category("mental health", 0.10, ["anxiety", "depression", "stress", "sleep"]),
        Category("medication", 0.05, ["dose", "side effect", "ibuprofen", "paracetamol"]),
        Category("chronic", 0.03, ["diabetes", "hypertension", "asthma", "chronic"]),
        Category("mild symptoms", 0.40, ["headache", "fatigue", "cough", "mild fever"]),
        Category("other", 0.02, []),
    ])
    """Categories in priority order (first match wins; urgent first); 'other' takes the rest."""
    rewriter_system: str = REWRITER_SYSTEM
    """The workshop's REWRITER_SYSTEM prompt, verbatim."""
    assistant_system: str = ASSISTANT_SYSTEM
    """System prompt added to every final record (and used at inference)."""
    closing_sentence: str = "Please consult a doctor for more personalized medical advice."
    """Every rewritten answer must end with exactly this sentence."""
    urgent_prefix: str = "Seek emergency care immediately."
    """Every urgent answer must start with exactly this sentence."""
    backend: str = field("rules", choices=("rules", "llm"))
    """Rewriter backend: rules (deterministic, no model) or llm (models.rewriter)."""
    seed: int = 42
    """Seed of the stratified sample (and of sampled LLM retries)."""
    reserve_size: int = field(150, min=0)
    """Extra rewritten + validated records (not in the sample) kept in reserve.jsonl for stage 3's top-up."""
    draw_slack: float = field(0.05, min=0.0, max=1.0)
    """Fraction of (sample + reserve) drawn and rewritten on top, so failed rewrites do not leave them short."""
    forbidden_phrases: list[str] = field(default_factory=lambda: [
        "no need to worry", "nothing to worry", "don't worry", "do not worry", "dont worry",
        "hope this helps", "hope it helps", "hope this answers", "hope i have answered",
        "hope i have solved", "hope i answered", "let me know", "feel free to ask",
        "wish you good health", "wishing you good health",
    ])
    """Phrases (case-insensitive, whole words, curly apostrophes normalised) that may not appear in an answer."""
    forbidden_policy: str = field("remove", choices=("remove", "reject"))
    """remove: cut the phrase (and its trailing punctuation) from the original answer; reject: reject the record."""
    dosage_units: list[str] = field(default_factory=lambda: [
        "mg", "mgs", "milligrams?", "mcg", "µg", "micrograms?", "g", "gm", "gms", "grams?", "ml", "mls",
        "millilit(?:er|re)s?", "iu", "units?", "tablets?", "tabs?", "capsules?", "caps?", "pills?",
        "drops?", "puffs?", "sachets?", "teaspoons?", "tsp", "tablespoons?", "tbsp",
    ])
    """Units (regex fragments) that make "<number> <unit>" a dosage: "500 mg", "2 tablets", "10 ml"."""
    dosage_number_words: list[str] = field(default_factory=lambda: [
        "one", "two", "three", "four", "five", "six", "half", "a half", "one and a half",
    ])
    """Number words that count as a dose amount before a unit ("one tablet", "half tablet")."""
    dosage_not_after: list[str] = field(default_factory=lambda: ["/dl", "/l", "/ml", "/mmol", "%", "/24"])
    """A number+unit followed by one of these is a lab value, not a dosage ("120 mg/dL")."""
    dosage_frequencies: list[str] = field(default_factory=lambda: [
        r"(?:once|twice|thrice)\s+(?:a\s+|per\s+|every\s+)?(?:daily|day|night|week)",
        r"(?:one|two|three|four|\d+)\s+times?\s+(?:a|per|every)\s+day",
        r"\d+\s+times?\s+daily",
        r"every\s+\d+(?:\s*(?:-|to)\s*\d+)?\s*(?:hours?|hrs?|h)",
        r"q\.?\s?\d+\s?h", r"b\.?i\.?d\.?", r"t\.?i\.?d\.?", r"q\.?i\.?d\.?",
    ])
    """Dosing frequencies (regex fragments, whole words): any match is a regimen ("twice daily", "every 6 hours")."""
    urgent_patterns: list[str] = field(default_factory=lambda: [
        "chest pains?", r"chest (?:tightness|pressure)", r"pain in (?:my|the|his|her) chest",
        r"short(?:ness)? of breath", r"(?:difficulty|trouble|hard) (?:in )?breathing(?! through)", r"can(?:'t|not) breathe",
        "breathless(?:ness)?", "stroke", "heart attack", "emergency(?! contracept)", "unconscious(?:ness)?",
        r"pass(?:ed|ing) out", "faint(?:ed|ing)", r"seizures?(?! free)", "convulsions?", r"suicid(?:e|al)",
        r"kill(?:ing)? myself", "overdos(?:e|ed|ing)", "(?<!food.)poison(?:ed|ing)", "anaphyla(?:xis|ctic)",
        r"(?:severe|heavy|profuse|uncontrolled) bleeding", r"(?:coughing|vomiting) (?:up )?blood",
        r"blood in (?:my |the )?vomit", r"numbness (?:on|of) one side", r"swelling of (?:the|my) (?:throat|tongue|lips)",
        r"(?:severe|sudden|worst) headache", r"stiff neck with fever",
        # stroke signs in lay words
        r"(?:slurred|thick|garbled) speech", r"speech (?:is |was |became )?(?:slurred|thick|garbled)",
        r"(?:face|mouth|smile) (?:is |looks |was )?(?:droop(?:ing|y|ed)?|crooked|hanging|lopsided)",
        r"one side of (?:my|his|her|the) (?:face|body) (?:\w+ ){0,2}(?:weak|numb|droop\w*|hanging|paraly\w*)",
        r"(?:weak|weakness|numb|numbness|paraly\w+|droop\w*) (?:\w+ ){0,3}one side",
        r"(?:numbness|weakness) in (?:my |his |her )?(?:right|left) side",
        r"(?:left|right) (?:side|arm|leg)(?: and (?:arm|leg))? (?:suddenly )?(?:feels?|felt|is|are|went|became) (?:\w+ )?(?:weak|numb)",
        r"(?:cannot|can't|could not|unable to) (?:lift|move|raise) (?:my|his|her) (?:right |left )?(?:arm|leg|hand)",
        r"(?:trouble|difficulty|difficulties) (?:speaking|talking|saying)", r"(?:words|speech) (?:come|came|comes|coming) out wrong",
        r"talking nonsense", r"(?:could|can)(?: ?not|'t) (?:say|speak)", r"unable to speak",
        r"(?:cannot|can't|could not) see (?:out of )?(?:the )?(?:left|right) half", r"sudden(?:ly)? (?:loss of|lost) (?:vision|sight)",
        r"sudden(?:ly)? (?:\w+ ){0,2}(?:weakness|numbness)", r"sudden(?:ly)? confus(?:ed|ion)",
        # cardiac pain, breathing, anaphylaxis
        r"crushing (?:\w+ ){0,3}(?:chest|pain|feeling|pressure)", r"squeezing (?:pain|pressure|feeling)",
        r"weight on (?:my|his|her|the) chest", r"pressure behind (?:my|his|her|the) (?:breastbone|sternum)",
        r"acute heart ?(?:ache|pain)", r"(?:chest|heart) pains?\W+(?:\w+\W+){0,6}(?:left arm|jaw)",
        r"chest pains? (?:\w+ ){0,8}aneurysm", r"tearing (?:\w+ ){0,2}pain", r"gasping(?: for (?:air|breath))?",
        r"(?:cannot|can't|could not|unable to) (?:finish|complete) (?:a |my |his |her )?sentences?",
        r"(?:lips|face) (?:\w+ ){0,2}(?:blue|bluish|purple|grey)", r"blue lips",
        r"(?:very|extremely|really|so) (?:difficult|hard) to breathe", r"(?:getting|is|it's) (?:hard|harder|difficult) (?:for me )?to breathe",
        r"(?:struggling|fighting) (?:to breathe|for (?:air|breath))", r"suffocat(?:e|ing|ion)", r"breathing is (?:slow|shallow)",
        r"(?:lips?|tongue|throat|face)(?: and (?:lips?|tongue|throat|face))? (?:is |are )?(?:swelling|swollen|swelled)",
        r"swollen (?:lips?|tongue|throat)", r"throat (?:feels |is |getting )?(?:tight|closing|closed)",
        # suicide in lay words
        r"(?:end|take) (?:my|his|her) (?:own )?life", r"end it all", r"want to die", r"better off dead",
        r"(?:do|does|did)(?: not|n't) (?:want|wish) to (?:live|be alive)", r"no (?:point|reason) (?:in )?(?:being alive|living|to live)",
        r"goodbye (?:letters?|notes?)", r"(?:take|swallow) them all", r"reason (?:i am|i'm) not dead",
        r"(?:saved|stockpiled|hoarded|collected) (?:up )?(?:my |some |all )?(?:\w+ )?(?:pills|tablets)",
        # bleeding, seizure, unresponsive, poisoning, other emergencies
        r"soak(?:ing|ed|s)? (?:through )?(?:a |one |my )?(?:pads?|tampons?) (?:every|an|each) hour",
        r"(?:blood|bleeding) (?:keeps |is )?(?:spurting|pouring|gushing)",
        r"bleeding (?:\w+ ){0,3}(?:does not|doesn't|won't|will not|did not) stop",
        r"(?:had|having|got) (?:a )?fits?", r"(?:is|was|are) (?:not responding|unresponsive)(?! to)", "unresponsive",
        r"(?:cannot|can't|could not|unable to) (?:wake|rouse) (?:him|her|them|my \w+)", r"hard to (?:wake|rouse)",
        r"swallowed (?:\S+ ){0,5}(?:pills|tablets|medicine|bleach|batteries|battery)",
        r"(?:cannot|can't|unable to) (?:bend|move) (?:his|her|my) neck", r"rash (?:that )?(?:does not|doesn't|did not) fade",
        r"non-?blanching",
        r"(?:sudden|severe) (?:\w+ ){0,2}pain in (?:my|his|the) (?:left |right )?(?:testicle|testis|scrotum)",
    ])
    """Urgent-detector patterns (regex fragments, whole words, case-insensitive); one un-negated match = urgent.
    Tuned on data/triage/triage_labels.jsonl: red flags in the words patients use (docs/TRIAGE.md)."""
    negation_cues: list[str] = field(default_factory=lambda: [
        "no", "not", "without", "denies", "deny", "denied", "never", "nor", "neither", "free of",
        "negative for", "absence of", "don't have", "do not have", "doesn't have", "didn't have",
        "haven't had", "has not had", "have not had",
    ])
    """A cue within negation_window words before a match negates it ("no chest pain"); the clause ends at . , ; : ! ? or 'but'."""
    negation_pseudo: list[str] = field(default_factory=lambda: [
        "no idea", "not sure", "no doubt", "not only", "not certain", "no matter", "not know",
    ])
    """Phrases that contain a cue but negate nothing ("no idea why I get chest pain")."""
    negation_window: int = field(5, min=0)
    """How many words before a match a negation cue may stand (same clause)."""
    urgent_context_cues: list[str] = field(default_factory=lambda: [
        r"(?:\w+ )?(?:weeks?|months?|years?) (?:ago|back)", r"last (?:week|month|year)", "in the past",
        "history of", "h/o", r"previous(?:ly)?", "prior", r"when (?:i|he|she) was", "recovered from",
        "always", "usually", "often", "chronic", r"for (?:many )?years",
        "risk of", "risks of", r"chances? of", "prevent", r"(?:signs|symptoms) of", r"(?:might|could|will) get",
        r"(?:afraid|scared|fear|fearful|worried) (?:of|about)", "read that", "is it true", "first aid",
        r"if (?:someone|somebody|a person|you)", r"(?:film|movie|book|article|story|news) about",
    ])
    """ConText cues (regex, whole words): one within urgent_context_window words BEFORE an urgent match in the
    same clause makes it historical, chronic or hypothetical ("ten years ago I had a stroke", "risk of overdose")."""
    urgent_context_post_cues: list[str] = field(default_factory=lambda: [
        r"(?:\w+ )?(?:weeks?|months?|years?) (?:ago|back)", r"before (?:\w+ )?(?:weeks?|months?|years?)",
        r"last (?:week|month|year)", r"in (?:19|20)\d\d", r"as a (?:child|kid|teenager|baby)", "in the past",
        r"(?:well )?controlled", r"for (?:the )?(?:past|last) (?:\w+ )?(?:months?|years?)", r"since (?:\w+ )?years",
        "since childhood", "since birth",
    ])
    """ConText cues (regex) that make an urgent match historical or chronic when they follow it within
    urgent_context_window words in the same clause ("a stroke 15 years back", "seizures are well controlled")."""
    urgent_context_window: int = field(8, min=0)
    """How many words a context cue may stand from an urgent match (same clause); 0 turns context off."""
    urgent_evaluated_cues: list[str] = field(default_factory=lambda: [
        r"(?:ecg|ekg|echo|tests?|reports?|results?|x-?ray|ct|mri|angiogram|work-?up|everything|all)"
        r" (?:\w+ ){0,3}(?:are|were|was|is|came back|come back|showed|turned out)(?: to be)? (?:all )?(?:normal|fine|clear|negative)",
        r"(?:was|been|got|am|is|were) (?:recently |just )?diagnosed", r"diagnosed with",
        r"(?:my|the|our|his|her) (?:\w+ )?(?:doctor|cardiologist|physician|neurologist|pulmonologist|specialist)"
        r" (?:\w+ ){0,2}(?:said|says|told|believes|thinks|suspects|referred|diagnosed|recommended|cleared)",
        r"(?:i was|was|were|been) (?:told|cleared)",
    ])
    """Phrases (regex, anywhere in the question) saying the complaint was already evaluated by a doctor
    (normal tests, a diagnosis); then the urgent_evaluated_soft patterns no longer make it urgent."""
    urgent_evaluated_soft: list[str] = field(default_factory=lambda: [
        "chest pains?", r"chest (?:tightness|pressure)", r"pain in (?:my|the|his|her) chest",
        r"short(?:ness)? of breath", r"(?:difficulty|trouble|hard) (?:in )?breathing(?! through)",
        "breathless(?:ness)?", "stroke", "heart attack", "emergency(?! contracept)", r"seizures?(?! free)",
        "faint(?:ed|ing)", r"pass(?:ed|ing) out",
    ])
    """The bare symptom words among urgent_patterns (same strings) that an evaluated question no longer
    counts; specific red flags (crushing pain, stroke signs, suicide, bleeding...) always count. []: off."""
    urgent_infant_max_months: int = field(3, min=0, max=24)
    """A fever word in a question about a baby younger than this (months, parsed age or an urgent_infant_words
    word) is urgent by itself (infant fever < 3 months); 0 turns the rule off."""
    urgent_infant_words: list[str] = field(default_factory=lambda: ["newborn", "neonate", r"new-?born baby"])
    """Words (regex) that mean a baby under urgent_infant_max_months when no age is given."""
    urgent_infant_fever_patterns: list[str] = field(default_factory=lambda: [
        "fever", r"febrile", r"temperature (?:of|is|was) (?:3[89]|1(?:0[0-9]|1[0-9]))", r"feels? hot",
    ])
    """Fever words (regex) for the infant-fever rule (not negated: "no fever" does not count)."""
    urgent_category: str = "urgent symptoms"
    """Category given to every question the urgent detector flags (ahead of keyword matches)."""
    pediatric_category: str = "pediatric"
    """Category whose 'year old' keyword is checked against the parsed age."""
    pediatric_max_age: int = field(17, min=0, max=30)
    """A "<N> year old" matches the pediatric category only when N <= this ("45 year old" does not)."""
    urgent_resolution: str = field("either", choices=("either", "detector"))
    """meta.is_urgent for llm rewrites: either = model OR detector (safer), detector = detector only."""
    min_sentences: int = field(1, min=1)
    """Fewest sentences in a rewritten answer (pysbd sentence boundaries)."""
    max_sentences: int = field(5, min=1)
    """Most sentences in a rewritten answer, prefix and closing sentence included."""
    rules_advice_sentences: int = field(3, min=1)
    """The rules backend keeps at most this many sentences of the cleaned answer (plus prefix and closing)."""
    rules_skip_patterns: list[str] = field(default_factory=lambda: [
        r"^(?:hi|hello|hey|dear|welcome|thanks?|thank you|greetings)\b", r"\bchat ?doctor\b",
        r"\bunderstand your (?:concern|situation|worry|problem|query|anxiety)", r"\bhere to help\b",
        r"\bi have (?:gone through|read|reviewed|seen) (?:your|the)", r"\bconsult (?:a|an|your) \w+ online\b",
        r"\b(?:regards|take care|best wishes|good luck|get well soon)\b", r"\bhope (?:you|this|it|my|that)\b",
        r"\b(?:revert|follow up) (?:back )?(?:to me|with (?:me|us))\b", r"\?$", r":$",
        # diagnostic claims and reasoning: the rewriter prompt forbids them
        r"\byou (?:are suffering|suffer) from\b", r"\byou (?:probably|definitely|likely|most likely) have\b",
        r"\b(?:i think|i feel|i believe|in my opinion|my diagnosis|the diagnosis is)\b",
    ])
    """Sentences of the original answer the rules backend never keeps (greetings, sign-offs, questions,
    diagnostic claims); regex, case-insensitive."""
    rules_advice_cues: list[str] = field(default_factory=lambda: [
        r"^(?:please |kindly )?(?:take|apply|drink|eat|use|keep|stop|start|try|avoid|consult|visit|see|get|go|do|"
        r"don't|do not|follow|continue|rest|consider|wear|wash|check|monitor|reduce|increase|limit|maintain|"
        r"practice|include|sleep|exercise|walk|seek|undergo|contact|meet|report)\b",
        r"\byou (?:should|must|can|may|need to|have to|could)\b", r"\bi (?:would )?(?:suggest|advise|recommend)\b",
        r"\b(?:it is|it's) (?:advisable|better|important|recommended|best)\b", r"\b(?:please|kindly)\b",
    ])
    """Sentences matching one of these (regex, case-insensitive) are preferred by the rules backend: actionable advice first."""
    bullet_pattern: str = r"(?m)^\s*(?:[-*\u2022\u25cf\u25aa]|\d{1,2}[.)])\s+"
    """A line matching this regex makes an answer a bullet list (rejected by validation)."""
    drug_vocabulary: str | None = "data/raw/drugbank_vocabulary.csv"
    """CSV of drug names (DrugBank 'Common name' column); a name in a rewrite but not in the original fails validation. null: extra_drug_names only."""
    extra_drug_names: list[str] = field(default_factory=lambda: [
        "paracetamol", "acetaminophen", "ibuprofen", "aspirin", "tylenol", "advil", "motrin", "crocin",
        "dolo", "calpol", "aleve", "naproxen", "benadryl", "zyrtec", "claritin", "nurofen", "panadol",
    ])
    """Brand and common names the vocabulary lacks."""
    drug_name_stoplist: list[str] = field(default_factory=lambda: [
        "water", "date", "iron", "calcium", "potassium", "sodium", "oxygen", "hemoglobin", "cholesterol",
        "cotton", "serotonin", "dopamine", "creatinine", "urea", "yeast", "caffeine", "rice", "egg",
        "coconut", "banana", "lemon", "apple", "papaya", "honey", "ginger", "cabbage", "cranberry",
        "turmeric", "glucose", "sugar", "salt", "alcohol", "nicotine", "vitamin", "zinc", "magnesium",
        "protein", "insulin", "estrogen", "progesterone", "testosterone", "histamine", "milk", "garlic",
    ])
    """Drug-vocabulary names that are also everyday words (foods, minerals, hormones): never counted as a new drug."""
    drug_min_chars: int = field(4, min=1)
    """Vocabulary names shorter than this are ignored (too many false hits)."""
    max_drug_name_words: int = field(3, min=1)
    """Longest vocabulary name (words) that is matched; longer names are dropped from the list."""
    llm: LLMRewriterConfig = field(default_factory=LLMRewriterConfig)
    """Generation settings of the llm backend (model folder: models.rewriter, else models.base)."""

    def validate(self) -> None:
        total = sum(c.weight for c in self.categories)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"categories weights must sum to 1.0, got {total:.4f}")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) > max_words ({self.max_words})")
        if self.min_sentences > self.max_sentences:
            raise ValueError(f"min_sentences ({self.min_sentences}) > max_sentences ({self.max_sentences})")
        if self.rules_advice_sentences + 2 > self.max_sentences:
            raise ValueError(f"rules_advice_sentences ({self.rules_advice_sentences}) + prefix + closing "
                             f"exceeds max_sentences ({self.max_sentences})")
        names = [c.name for c in self.categories]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"category names must be unique and non-empty, got {names}")
        for key in ("urgent_category", "pediatric_category"):
            if getattr(self, key) not in names:
                raise ValueError(f"{key} '{getattr(self, key)}' is not one of the categories {names}")
        import re

        for key in ("dosage_units", "dosage_frequencies", "urgent_patterns", "rules_skip_patterns",
                    "rules_advice_cues", "urgent_context_cues", "urgent_context_post_cues",
                    "urgent_infant_words", "urgent_infant_fever_patterns", "urgent_evaluated_cues"):
            for i, pattern in enumerate(getattr(self, key)):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{key}[{i}] is not a valid regex ({exc}): {pattern!r}") from None
        unknown = sorted(set(self.urgent_evaluated_soft) - set(self.urgent_patterns))
        if unknown:
            raise ValueError(f"urgent_evaluated_soft entries must be urgent_patterns entries, not {unknown}")
        try:
            re.compile(self.bullet_pattern)
        except re.error as exc:
            raise ValueError(f"bullet_pattern is not a valid regex ({exc})") from None
