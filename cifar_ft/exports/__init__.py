"""Exports: a fine-tuned model taken out of the framework (`python -m cifar_ft.export`): the formats
(`formats.FORMATS`), timm's own form of a model (`timm_form`), the peft adapter folder (`peft`), the
model card (`model_card`), and an output folder written whole or not at all (`folder`)."""
