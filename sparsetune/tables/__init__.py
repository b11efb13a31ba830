"""Tables from results.json files, side by side with the papers' published numbers (scripts/make_table.py)."""
