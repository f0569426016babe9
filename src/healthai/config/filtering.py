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

    def validate(self) -> None:
        total = sum(c.weight for c in self.categories)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"categories weights must sum to 1.0, got {total:.4f}")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) > max_words ({self.max_words})")
