"""Embedded base model settings: a tiny Qwen3.5-architecture model built and trained here."""

from __future__ import annotations

from dataclasses import dataclass

from healthai.config.loader import field


@dataclass
class EmbeddedModelConfig:
    """Sizes of the tiny stand-in model and its domain-base training (the local default base model)."""

    shipped: str | None = "models/embedded-base"
    """The pretrained base shipped with the repository (`make base`, MODEL_CARD.md there): the base-model stage
    checks its held-out record and copies it into the project; null = build a tiny base here from `corpus`
    with the sizes and domain training below (CI and the tests, where the model's quality is not tested:
    configs/sites/ci.yaml)."""
    corpus: str = "{project_dir}/1.curation/curated.jsonl"
    """Curated stage-1 records whose assistant answers train the tokenizer and the domain base (shipped: null)."""
    fallback_corpus: str | None = "data/raw/icliniq_2k_chat.jsonl"
    """Used (with a warning) when `corpus` does not exist yet: raw iCliniq answers; null = fail instead."""
    vocab_size: int = field(6000, min=512)
    """Byte-level BPE vocabulary trained on the corpus, the 33 Qwen special tokens included."""
    min_frequency: int = field(2, min=1)
    """BPE: a pair must occur this often to be merged."""
    hidden_size: int = field(128, min=16)
    """Model width."""
    intermediate_size: int = field(384, min=16)
    """MLP width."""
    num_hidden_layers: int = field(4, min=1)
    """Layers: 3 linear-attention (Gated DeltaNet) per full-attention layer, as in Qwen3.5."""
    full_attention_interval: int = field(4, min=1)
    """Every N-th layer is full attention, the others Gated DeltaNet (Qwen3.5: 4)."""
    num_attention_heads: int = field(4, min=1)
    """Full-attention query heads."""
    num_key_value_heads: int = field(2, min=1)
    """Full-attention key/value heads (grouped-query attention, as Qwen3.5's 16/4)."""
    head_dim: int = field(32, min=4)
    """Full-attention head size."""
    linear_num_key_heads: int = field(2, min=1)
    """Gated DeltaNet key heads."""
    linear_num_value_heads: int = field(4, min=1)
    """Gated DeltaNet value heads (a multiple of the key heads)."""
    linear_head_dim: int = field(32, min=4)
    """Gated DeltaNet key and value head size."""
    tie_word_embeddings: bool = True
    """Share the input embedding and the output head (the vocabulary dominates a tiny model)."""
    max_position_embeddings: int = field(4096, min=128)
    """Longest sequence the model is configured for (tokens)."""
    seed: int = 1234
    """Seed for weight initialisation and the domain-training data order."""
    domain_epochs: float = field(1.0, min=0.0)
    """Domain-base training: passes over the answer corpus (full fine-tune, plain causal LM); 0 = random weights."""
    domain_learning_rate: float = field(3e-3, min=0.0)
    """Domain-base training: peak learning rate (AdamW, linear warm-up, cosine decay)."""
    domain_batch_size: int = field(8, min=1)
    """Domain-base training: blocks per optimizer step."""
    domain_block_size: int = field(256, min=16)
    """Domain-base training: tokens per block (texts joined by <|endoftext|>; a text that fits in a block
    is never split, so a question stays in context of its answer; 90% of question+answer texts fit 256)."""
    domain_max_tokens: int = field(900_000, min=1000)
    """Domain-base training: cap on corpus tokens, taken from a seeded shuffle (the 5.9k curated
    question+answer texts are ~830k: one epoch in ~4.5 min on 2 cores at ~3.5k tokens/s)."""
    domain_warmup_ratio: float = field(0.05, min=0.0, max=0.5)
    """Domain-base training: fraction of steps with linear learning-rate warm-up."""
    urgent_style_corpus: bool = True
    """Urgent-rule lever (docs/TRIAGE.md): train the domain base on "question + answer" texts whose answer
    starts with filter.urgent_prefix when the stage-2 detector flags the question (val/test questions of
    3.merge left out), instead of bare answers. Chosen on val: the fine-tuned model's closing-sentence
    rate went from 0.00 to 1.00 and the only lever set with recall > 0 needs it; false = answers only."""
    urgent_style_weight: float = field(5.0, min=0.0, max=100.0)
    """Urgent-style texts: loss weight of the answer's first token (where the rule decides "Seek" or not)
    in the domain-base training; 1 = an ordinary token."""

    def validate(self) -> None:
        if self.linear_num_value_heads % self.linear_num_key_heads:
            raise ValueError("linear_num_value_heads must be a multiple of linear_num_key_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.domain_block_size > self.max_position_embeddings:
            raise ValueError("domain_block_size is larger than max_position_embeddings")


@dataclass
class PretrainConfig:
    """`make base`: pretraining the shipped embedded base (sizes and tokenizer: the `embedded` section)."""

    corpus: str = "data/raw/medquad.jsonl.gz"
    """Question-answer corpus of the base (MedQuAD, CC BY 4.0, data/raw/SOURCES.md); any reader format."""
    output: str = "models/embedded-base"
    """The shipped base folder (weights, tokenizer, template, MODEL_CARD.md, held_out.json); repo-relative."""
    work_dir: str = "{project_dir}/pretrain"
    """Checkpoint, tokenizer and token blocks of a run in progress; a rerun resumes from here."""
    max_tokens: int = field(20_000_000, min=1000)
    """Training budget in tokens seen (batch x block x steps); the schedule's decay ends here."""
    max_seconds: float = field(0.0, min=0.0)
    """Stop (checkpointed, resumable) after this many seconds of training in one run; 0 = run to max_tokens."""
    block_size: int = field(256, min=16)
    """Tokens per training block (a question-answer text that fits is never split across blocks)."""
    batch_size: int = field(8, min=1)
    """Blocks per optimizer step."""
    learning_rate: float = field(3e-3, min=0.0)
    """Peak AdamW learning rate."""
    warmup_ratio: float = field(0.002, min=0.0, max=0.5)
    """Fraction of the steps with linear warm-up (0.002 of the default budget: ~40k tokens)."""
    decay_ratio: float = field(0.2, min=0.0, max=1.0)
    """Warm-up, constant, then linear decay over this last fraction of the steps (a run stopped before the
    decay can be continued to a larger max_tokens with the same schedule)."""
    min_lr_ratio: float = field(0.1, min=0.0, max=1.0)
    """Learning rate at the end of the decay, as a fraction of the peak."""
    weight_decay: float = field(0.1, min=0.0)
    """AdamW weight decay."""
    val_fraction: float = field(0.02, min=0.0, max=0.5)
    """Share of the corpus texts held out for the validation loss (keyed by question: stable across runs)."""
    eval_every_tokens: int = field(500_000, min=1000)
    """Validation loss every this many training tokens, and at the end."""
    probe_every_tokens: int = field(2_000_000, min=1000)
    """The urgent probe (~1 min on 2 cores) every this many training tokens, and at the end of each run."""
    eval_blocks: int = field(64, min=1)
    """Validation blocks scored per evaluation."""
    checkpoint_every_seconds: float = field(120.0, min=0.0)
    """Atomic checkpoint (weights, optimizer, schedule, RNG, data position) at most this often; 0 = every step."""
    probe_splits: str | None = "{project_dir}/3.merge"
    """Demo splits (train/val + .meta.jsonl) for the urgent probe: a logistic regression on the base's
    question states, fitted on train, AUC on val (does the base read the question?); missing/null = no probe."""
    held_out_threshold: float = field(0.7, min=0.1, max=1.0)
    """Jaccard of 3-word shingles at which a corpus text counts as a near duplicate of a held-out question."""
