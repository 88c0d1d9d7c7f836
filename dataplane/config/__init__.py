"""The configuration a snapshot carries, as frozen value objects, parsed and validated once."""
