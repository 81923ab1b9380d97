"""Machine-learning core: base models, the chat format, and what training and serving share."""
