"""Loading models and tokenizers: built-in tiny models for offline work, or any Hugging Face model."""
