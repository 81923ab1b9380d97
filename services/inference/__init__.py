"""inference: one base model in memory serving many LoRA adapters, OpenAI-compatibly."""
