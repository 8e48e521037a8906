"""``sentinel replay``: captured alerts through the same path as ``sentinel run``, to test
prompts. See ``engine`` for the flow, ``cassette`` for deterministic runs without network."""
