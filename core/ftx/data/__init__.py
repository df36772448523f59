"""Data preparation: read rows, convert them with the recipe's format, validate, split, tokenise."""
