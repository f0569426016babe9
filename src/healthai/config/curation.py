"""Stage 1 (initial curation) settings.

Every phrase list is a list of Python regular expressions, matched case-insensitively.
The defaults were measured on the bundled real samples (see data/raw/SOURCES.md):
iCliniq and HealthCareMagic answers open with "Hi/Hello, Welcome to Chat Doctor forum",
close with "Take care. For more information consult a <specialist> online", and carry
the ChatDoctor anonymisation token where names (and sometimes whole phrases) were cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from healthai.config.loader import field

FORMATS = ("auto", "chatdoctor_json", "chatdoctor_jsonl", "evals_chat", "messages", "csv", "tsv")


@dataclass
class InputSpec:
    """One raw input file."""

    path: str = ""
    """File path ({repo} / {project_dir} expanded; relative paths are under the repo)."""
    format: str = field("auto", choices=FORMATS)
    """auto | chatdoctor_json | chatdoctor_jsonl | evals_chat | messages | csv | tsv."""
    question_column: str = "question"
    """CSV/TSV only: the column holding the patient's question."""
    answer_column: str = "answer"
    """CSV/TSV only: the column holding the doctor's answer."""
    source: str | None = None
    """Source name kept in each record's meta (default: the file name without extension)."""


@dataclass
class BoilerplateMiningConfig:
    """Boilerplate mined from the corpus: opening/closing sentences a source repeats across its answers."""

    enabled: bool = True
    """Count normalised opening and closing sentences (and lines) of every answer before curating; remove the frequent ones."""
    positions: list[str] = field(default_factory=lambda: ["opening", "closing"], choices=("opening", "closing"))
    """Where a repeated sentence counts as boilerplate: the start and/or the end of an answer."""
    edge_sentences: int = field(2, min=1, max=10)
    """How many sentences at each end of an answer are the opening / closing position."""
    min_words: int = field(2, min=1)
    """Shorter sentences are never mined ("No.", "Yes." carry the answer)."""
    min_share_per_source: float = field(0.02, min=0.0, max=1.0)
    """A candidate of one source recurs in at least this share of the source's answers (same position) ..."""
    min_count_per_source: int = field(10, min=2)
    """... and in at least this many of them."""
    min_share_overall: float = field(0.01, min=0.0, max=1.0)
    """A candidate of the whole corpus (all sources) recurs in at least this share of all answers ..."""
    min_count_overall: int = field(50, min=2)
    """... and in at least this many of them."""
    keep_medical: bool = True
    """A candidate with medical content (medical_patterns) is reported but kept ("drink plenty of fluids")."""
    medical_patterns: list[str] = field(default_factory=lambda: [
        r"\b(?:doctors?|physicians?|gp|specialists?|[a-z]+ologists?|pediatrician|surgeons?|nurses?|pharmacists?|"
        r"hospitals?|clinics?|emergency|a&e|er)\b",
        r"\b(?:symptoms?|fever|pain\w*|aches?|cough\w*|breath\w*|blood|pressure|sugar|infections?|inflammation|"
        r"rash\w*|swell\w*|bleed\w*|vomit\w*|nausea|diarrh\w*|dizz\w*|headaches?|allerg\w*|virus\w*|viral|"
        r"bacteri\w*|covid|flu|cold|pregnan\w*|injur\w*|wounds?)\b",
        r"\b(?:medic\w*|drugs?|tablets?|pills?|doses?|dosage|antibiotics?|vaccin\w*|treat\w*|therap\w*|surgery|"
        r"diagnos\w*|tests?|scans?|x-?rays?|mri|ultrasound|prescri\w*)\b",
        r"\b(?:fluids?|water|hydrat\w*|rest|sleep|diet|exercise|hygiene|masks?|isolat\w*|quarantine|smok\w*|"
        r"alcohol|weight|vitamins?|skin|heart|lungs?|chest|stomach|kidneys?|liver|throat|temperature|pulse|"
        r"glucose|period|menstrua\w*)\b",
        r"\b\d+(?:[.,]\d+)?\s*(?:mg|mcg|µg|ml|g|kg|iu|units?|°?c|°?f|mmhg|mmol|%|days?|weeks?|hours?|times)(?!\w)",
    ])
    """Regexes (case-insensitive): a mined sentence matching one has medical content (words; a dose, temperature or duration)."""
    remove_anyway: list[str] = field(default_factory=list)
    """Regexes: a mined sentence matching one is removed even with medical content (e.g. the platform's "consult a doctor on X")."""
    veto: list[str] = field(default_factory=list)
    """Sentences (as listed in mined_boilerplate.csv; compared normalised) that are never removed."""
    report_top: int = field(20, min=0)
    """Candidates listed per source in stats.json and the review sample (all are in mined_boilerplate.csv)."""

    def validate(self) -> None:
        for name in ("medical_patterns", "remove_anyway"):
            for i, pattern in enumerate(getattr(self, name)):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{name}[{i}] is not a valid regular expression: {exc}") from None


@dataclass
class CurationConfig:
    """Read raw Q&A, clean, filter, deduplicate, scrub personal data (stage 1)."""

    inputs: list[InputSpec] = field(default_factory=lambda: [
        InputSpec(path="data/raw/icliniq_2k_chat.jsonl"),
        InputSpec(path="data/raw/healthcaremagic_82_sample.jsonl"),
        InputSpec(path="data/raw/chatdoctor5k.json"),
    ])
    """Raw inputs read in order (the bundled real samples by default); --input replaces them."""

    # -- quality filters ---------------------------------------------------------------
    min_answer_words: int = field(20, min=1)
    """Answers shorter than this (words, after cleaning) are rejected as too short."""
    max_answer_words: int = field(400, min=1)
    """Answers longer than this (words) are rejected as too long."""
    min_question_words: int = field(5, min=1)
    """Questions shorter than this (words) are rejected."""
    max_question_words: int = field(600, min=1)
    """Questions longer than this (words) are rejected (pasted reports, not a question)."""
    language: str = "en"
    """Language kept (langdetect code); other languages are rejected as 'non_english'."""
    language_fast_accept: float = field(0.25, min=0.0, max=1.0)
    """Share of English stop words above which a text counts as English without running langdetect (speed)."""
    language_seed: int = 0
    """langdetect's DetectorFactory.seed: langdetect is random without it."""
    truncation_tail_words: list[str] = field(default_factory=lambda: [
        "a", "an", "the", "of", "to", "and", "or", "with", "for", "in", "on", "at", "by", "from", "as",
        "is", "are", "be", "your", "my", "his", "her", "their", "this", "that", "which", "but", "if",
        "than", "like", "such", "very", "also", "any", "some", "other",
    ])
    """An answer without final punctuation that ends on one of these words (or , : ( -) was cut: 'truncated'."""
    complete_unpunctuated: bool = True
    """An answer without final punctuation that does not look cut gets a final '.' (counted as text cleaned)."""

    # -- text cleaning -----------------------------------------------------------------
    fix_mojibake: bool = True
    """Repair mojibake and normalise unicode with ftfy (NFC)."""
    strip_html: bool = True
    """Unescape HTML entities and remove HTML tags."""
    max_repeated_punctuation: int = field(1, min=1)
    """Runs of the same ! ? , ; : collapse to this many; runs of 4+ dots become '...'."""

    # -- redundant phrases (answers) ---------------------------------------------------
    artifact_replacements: dict[str, str] = field(default_factory=lambda: {
        r"\bCellophane You\b": "Thank you",
    })
    """ChatDoctor's substitution artefacts (regex -> replacement), fixed before the phrase rules run."""
    inline_patterns: list[str] = field(default_factory=lambda: [
        r"\(?\s*(?:attachment|image|report|file|link)s?\s+removed\s+to\s+protect\s+patient\s+identity\s*\)?",
        r"\(\s*\.\.\.\s*\)",
    ])
    """Removed wherever they occur (the rest of the sentence is kept)."""
    greeting_pattern: str = (
        r"^(?:hi+|hello+|hey|dear|greetings|good\s+(?:morning|afternoon|evening|day))\b"
        r"(?:\s*(?:mr|mrs|ms|miss|dr|prof)\.)?(?:[^.,!?:;\n]{0,40}?[.,!?:;]+|\s+(?=[A-Z])|$)\s*"
    )
    """An opening salutation ("Hi,", "Dear Mr. X,", "Hello doctor.") removed from the start of an answer."""
    repair_sentence_boundaries: bool = True
    """Put a space after a full stop glued to the next sentence ("safety.Regards"), before a title glued to a word ("RegardsDr.") and after a greeting glued to the next word ("HelloThanks"); never inside numbers (3.5), abbreviations (e.g.) or URLs."""
    closing_formulas: list[str] = field(default_factory=lambda: [
        r"(?:thanks|thank\s+you)(?:\s+(?:and|&)\s+(?:best\s+|kind\s+|warm\s+)?regards)?",
        r"(?:best|kind|warm|warmest|with\s+best)?\s*(?:regards|rgds)",
        r"take\s*care(?:\s+of\s+(?:yourself|your\s*self))?",
        r"(?:best|good)\s+wishes",
        r"(?:i\s+)?wish(?:ing)?\s+you\s+(?:a\s+)?(?:good|great|speedy|quick|early|fast)\s+(?:health|recovery)",
        r"get\s+well\s+soon", r"stay\s+(?:safe|healthy|well)", r"sincerely", r"yours\s+(?:truly|sincerely)",
        r"all\s+the\s+best", r"good\s+luck", r"god\s+bless(?:\s+you)?",
        r"thanks?(?:\s+you)?\s+for\s+(?:the|your)\s+(?:query|question|trust)",
    ])
    """Closing formulas (regex): at the end of an answer, with or without a following title and name ("Regards, Dr. X"), also glued to the previous sentence without a space or full stop, they are removed."""
    token_pattern: str = r"chat\s*doctor"
    """ChatDoctor's anonymisation token: a sentence holding it is broken (text was cut there) and is dropped whole."""
    clause_level_min_words: int = field(25, min=1)
    """A sentence this long that matches a drop pattern loses only the matching clause (comma-separated part)."""
    drop_sentence_patterns: list[str] = field(default_factory=lambda: [
        r"\bhope\s+(?:this|that|it|my)\b(?:\s+\w+){0,2}?\s+(?:helps?|answers?|clears?|clarifies|is\s+helpful|will\s+help)",
        r"\bhope\s+(?:i\s+have|i've|i\s+had|to\s+have)\s+(?:answered|solved|cleared|addressed|resolved|helped)",
        r"\bhope\s+(?:your|the)\s+(?:concern|query|question|doubt)s?\s+(?:is|are|has|have)\b",
        r"\bhave\s+a\s+(?:nice|good|great|wonderful|pleasant)\s+day\b",
        r"\bwish(?:ing)?\s+you\s+(?:a\s+)?(?:good|great|best\s+of|all\s+the\s+best|speedy|quick|early|fast)",
        r"\bfor\s+(?:more|further)\s+(?:information|info|details|queries)\b.{0,80}?\bconsult\b",
        r"\b(?:consult|to|with|ask|see)\s+(?:an?\s+|the\s+|your\s+)?[\w\s,&-]{1,60}?\s+online\b",
        r"\brevert\s+(?:back\s+)?(?:with|to)\b",
        r"\bthanks?(?:\s+you)?\s+(?:a\s+lot\s+)?for\s+(?:your|the|this)\s+(?:query|question|queries|questions|inquiry|enquiry|trust)",
        r"\bthanks?(?:\s+you)?\s+for\s+(?:using|consulting|contacting|writing|posting|choosing|asking|reaching|taking\s+help|sharing)",
        r"^\s*(?:and\s+)?welcome\s+to\b",
        r"^\s*(?:thanks|thank\s+you|thanks\s+and\s+regards|best|warm|kind)?\s*(?:regards|wishes)\b",
        r"(?<!with\s)(?<!in\s)\bregards\b(?!\s+to\b)",
        r"\btake\s+care\b(?!\s+of\s+(?!yourself|your\s*self|urself))",
        r"^\s*i\s+(?:can\s+|do\s+)?understand\s+your\s+(?:concern|worry|query|problem)s?\W*$",
        r"^\s*(?:i\s+have\s+)?(?:gone\s+through|read|noted|reviewed)\s+your\s+(?:query|question|concern)s?(?:\s+in\s+detail)?\W*$",
        r"\bget\s+back\s+to\s+(?:me|us)\b",
        r"\bfeel\s+free\s+to\s+(?:ask|contact|write|consult)\b",
        r"^\s*(?:get\s+well\s+soon|all\s+the\s+best|good\s+luck|god\s+bless(?:\s+you)?)\W*$",
        r"^\s*(?:dr|doctor)\.?\s*$",
    ])
    """A sentence of an answer matching any of these is dropped whole (sign-offs, greetings, the ChatDoctor token)."""
    residue_patterns: list[str] = field(default_factory=lambda: [
        r"chat\s*doctor",
        r"\bhope\s+(?:this|that|it)\b(?:\s+\w+){0,2}?\s+(?:helps?|answers?)",
        r"\bhope\s+i\s+have\s+answered",
        r"\bhave\s+a\s+nice\s+day\b",
        r"\bwish\s+you\s+good\s+health\b",
        r"\bfor\s+more\s+information\b.{0,80}?\bconsult\b",
        r"\bthanks?(?:\s+you)?\s+for\s+(?:your|the)\s+(?:query|question)",
        r"\bthanks?(?:\s+you)?\s+for\s+using\b",
        r"\btake\s+care\b(?!\s+of\s+(?!yourself|your\s*self|urself))",
        r"(?<!with\s)(?<!in\s)\bregards\b(?!\s+to\b)",
        r"^\s*(?:hi|hello|dear)\b",
    ])
    """Safety net: a kept answer that still matches one of these is rejected as 'boilerplate_residue'."""
    boilerplate_mining: BoilerplateMiningConfig = field(default_factory=BoilerplateMiningConfig)
    """Boilerplate mined from the corpus itself (a new platform's call-to-action, sign-off): see the section's keys."""

    # -- personal data -----------------------------------------------------------------
    scrub_pii: bool = True
    """Replace names, e-mails, phone numbers and URLs with placeholders (ages are kept)."""
    pii_placeholders: dict[str, str] = field(default_factory=lambda: {
        "EMAIL": "[EMAIL]", "URL": "[URL]", "PHONE": "[PHONE]", "NAME": "[NAME]", "ID": "[ID]",
    })
    """Replacement text per kind of personal data."""
    pii_name_triggers: list[str] = field(default_factory=lambda: [
        r"\b(?:dear|hi|hello|hey|hii|greetings)\b(?=\s)",
        r"\b(?:mr|mrs|ms|miss|mx|dr|prof)\b\.?",
        r"\bdoctor\b(?!\.)",
        r"(?-i:(?:(?<=[a-z])|\b)(?:Dr|Prof)\.?(?=[A-Z][a-z]))",
        r"\b(?:regards|thanks|sincerely|yours\s+truly|best\s+wishes|cheers),(?:\s*-)?",
        r"\bmy\s+(?:son|daughter|husband|wife|mother|father|mom|dad|brother|sister|friend|boyfriend|girlfriend|"
        r"baby|child|partner)\s*,",
    ])
    """Regexes after which one to three capitalised words are taken to be a person's name ("Dr.Name", "Dr Name", "DrName", "Doctor Name")."""
    pii_name_intro_triggers: list[str] = field(default_factory=lambda: [
        r"\bmy\s+name\s+is\b",
        r"\bi\s+am\s+called\b",
        r"\bname\s*:",
        r"(?:regards|take\s*care|wishes|thanks|thank\s+you|sincerely)[\s,.-]*(?:dr|doctor|prof)\b\.?",
        r"\bmy\s+(?:son|daughter|husband|wife|mother|father|mom|dad|brother|sister|friend|boyfriend|girlfriend|"
        r"baby|child|partner)(?:'s|s)\s+name\s+is\b",
    ])
    """Regexes after which the next word is a name even in lower case ("my name is john", a sign-off's "Regards Dr.xxxx")."""
    pii_not_names: list[str] = field(default_factory=lambda: [
        "doctor", "doc", "dr", "sir", "madam", "maam", "ma'am", "there", "all", "team", "everyone", "friend",
        "chat", "chatdoctor", "i", "im", "i'm", "my", "we", "you", "the", "a", "an", "and", "thanks", "thank",
        "please", "hope", "welcome", "good", "greetings", "regards", "am", "is", "it", "this", "that",
        "hello", "hi", "hey", "dear", "mr", "mrs", "ms", "patient", "mom", "dad", "mother", "father",
        "madame", "sirs", "physician", "specialist", "surgeon", "nurse", "pharmacist", "consultant",
        "yes", "no", "ok", "okay", "well", "also", "so", "but", "just", "very", "today", "yesterday",
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "god", "sister",
        "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
        "november", "december", "english", "indian", "american", "wellcome", "first", "according", "he", "she", "they", "his", "her",
        "after", "before", "since", "when", "what", "how", "why", "who", "had", "have", "has", "was",
        "took", "take", "got", "get", "went", "need", "feel", "feeling", "been", "being", "not",
        "husband", "wife", "son", "daughter", "brother", "baby", "child", "years", "year", "months",
        "appointment", "appointments", "visit", "visits", "office", "clinic", "consultation", "advice", "note",
        "notes", "said", "says", "told", "prescribed", "recommended", "suggested", "advised", "forum",
    ])
    """Capitalised words after a trigger that are NOT names (lower-case comparison)."""

    # -- duplicates --------------------------------------------------------------------
    dedup_on: str = field("pair", choices=("pair", "question", "answer"))
    """What counts as a duplicate: the question+answer pair, the question alone or the answer alone."""
    near_dedup: bool = True
    """Also remove near-duplicates (MinHash-LSH), not only exact duplicates of the normalised text."""
    shingle_size: int = field(3, min=1, max=20)
    """Word n-gram size of the MinHash shingles (3 suits answers of 20-400 words: one edited word changes 3 shingles)."""
    num_perm: int = field(128, min=16, max=1024)
    """MinHash permutations (more: slower, more exact similarity estimates)."""
    near_dup_threshold: float = field(0.7, min=0.05, max=1.0)
    """Jaccard similarity of the shingle sets at and above which two records are near-duplicates."""
    minhash_seed: int = 1
    """Seed of the MinHash permutations (fixed: reruns give the same clusters)."""

    # -- manual validation -------------------------------------------------------------
    review_sample_size: int = field(50, min=0)
    """Records exported for manual validation (stratified by source)."""
    review_seed: int = 42
    """Seed of the review sample."""
    review_decisions: str | None = "{project_dir}/1.curation/review_marked.csv"
    """A marked review file (CSV or JSONL with id, decision accept|reject|edit, edited_answer) applied when it exists."""

    # -- speed -------------------------------------------------------------------------
    workers: int = field(0, min=0, max=256)
    """Processes for the per-record work (cleaning, PII, filters, shingling) of inputs over 500 records; 0: one per CPU the job may use, 1: none. Outputs do not depend on it."""

    # -- progress ----------------------------------------------------------------------
    progress_min_records: int = field(2000, min=0)
    """Show a progress bar for inputs with at least this many records."""

    def validate(self) -> None:
        if self.min_answer_words > self.max_answer_words:
            raise ValueError(f"min_answer_words ({self.min_answer_words}) > max_answer_words ({self.max_answer_words})")
        if self.min_question_words > self.max_question_words:
            raise ValueError(f"min_question_words ({self.min_question_words}) > max_question_words "
                             f"({self.max_question_words})")
        for name in ("inline_patterns", "drop_sentence_patterns", "residue_patterns", "pii_name_triggers",
                     "pii_name_intro_triggers", "closing_formulas"):
            for i, pattern in enumerate(getattr(self, name)):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{name}[{i}] is not a valid regular expression: {exc}") from None
        for pattern in [self.greeting_pattern, self.token_pattern, *self.artifact_replacements]:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        missing = {"EMAIL", "URL", "PHONE", "NAME", "ID"} - set(self.pii_placeholders)
        if missing:
            raise ValueError(f"pii_placeholders lacks {', '.join(sorted(missing))}")
