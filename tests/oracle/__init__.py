"""Feature flags evaluated the straightforward way: every rule and condition of the payload
interpreted on each call (``flags``, ``conditions``, as ``sextant.schemas``' modules of
those names read before they compiled payloads; hashing is the one of
``sextant.schemas.assignment``, checked against GrowthBook's own SDK).

The property tests (``tests/unit/test_flags_compiled.py``) check that the compiled evaluator
gives exactly what this one gives, on random payloads, conditions and attributes.
"""
