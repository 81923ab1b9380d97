"""Wire shapes of the OpenAI and Anthropic APIs, and conversions between them."""
