"""``elock``: the umbrella command (the demo of the whole story)."""
