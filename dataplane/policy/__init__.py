"""What may be served and how: auth, budgets and rate limits, routing, breakers, retries, cache."""
