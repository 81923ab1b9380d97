"""trainer: fine-tuning jobs (SFT, DPO, reward models) with LoRA on CPU."""
