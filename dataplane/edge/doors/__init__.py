"""Front doors: the wire formats clients arrive in (Anthropic, Bedrock, Vertex).

A door turns the client's request into the canonical Anthropic-format request every provider
adapter takes, and turns the canonical answer back into the client's own format. The Anthropic
door is the identity: the client's bytes go through untouched both ways.
"""
