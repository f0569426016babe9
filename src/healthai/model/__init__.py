"""The model side, in layers: model folder -> LoRA/data/hparams -> generation -> trainer -> hpo -> stage entry points."""
