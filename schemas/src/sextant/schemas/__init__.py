"""The contract between Sextant's parts: events, config documents, derived records, topics."""
