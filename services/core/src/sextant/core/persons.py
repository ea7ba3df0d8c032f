"""Where a person's rows are, table by table: what deletion removes and export returns.

A person is named by the digests of their ids (:func:`sextant.schemas.config.person_hash`),
which the warehouse computes from each row, so deletion never needs the ids in clear.
"""

from __future__ import annotations

PERSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("distinct_id", "user_id", "anonymous_id", "previous_id"),
    "exposures": ("unit_id",),
    "person_overrides": ("distinct_id", "person_id"),
    "identity_decisions": ("source", "target", "person_id"),
}
"""Every table holding rows about one person, and the columns naming them."""


def person_predicate(table: str) -> str:
    """SQL true for ``table``'s rows of the person whose id digests are ``{hashes}``, in
    project ``{p}`` (both bound parameters)."""
    digest = "lower(hex(SHA256(concat(project_id, ':', ifNull({}, '')))))"
    digests = " OR ".join(
        f"{digest.format(column)} IN {{hashes:Array(String)}}" for column in PERSON_COLUMNS[table]
    )
    return f"project_id = {{p:String}} AND ({digests})"
