"""The resolver's persons: merges, guards, splits, and the same persons after a reload."""

from __future__ import annotations

from datetime import UTC, datetime

from sextant.processor.persons import Applied, PersonsState
from sextant.schemas.identity import Decision, EdgeKind, IdentityEdge, edge_of

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _none(project: str) -> frozenset[str]:
    return frozenset({"nobody"}) if project == "p" else frozenset()


class Table:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def write(self, writes: list[tuple[str, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


def _apply(state: PersonsState, edges: list[tuple[EdgeKind, str, str]]) -> Applied:
    applied = Applied()
    for kind, source, target in edges:
        offset = state.expected_offset
        state.admit(offset)
        edge = IdentityEdge(project_id="p", kind=kind, source=source, target=target, timestamp=AT)
        state.apply(offset, edge, _none, applied)
    return applied


def _person(state: PersonsState, distinct_id: str) -> str:
    return state.projects["p"].person(distinct_id)[0]


def test_an_anonymous_visitor_who_signs_up_becomes_the_known_user() -> None:
    state = PersonsState(0, max_ids=10)
    applied = _apply(state, [(EdgeKind.IDENTIFY, "anon-1", "alice")])
    assert _person(state, "anon-1") == _person(state, "alice") == "alice"
    assert [(o.distinct_id, o.person_id) for o in applied.overrides] == [("anon-1", "alice")]
    [decision] = applied.decisions
    assert decision.decision is Decision.MERGED
    assert decision.moved == ["anon-1"]


def test_two_known_users_sharing_an_anonymous_id_stay_two_persons() -> None:
    state = PersonsState(0, max_ids=10)
    applied = _apply(
        state, [(EdgeKind.IDENTIFY, "device", "alice"), (EdgeKind.IDENTIFY, "device", "bob")]
    )
    assert _person(state, "device") == "alice"
    assert _person(state, "bob") == "bob"
    assert [d.decision for d in applied.decisions] == [Decision.MERGED, Decision.REFUSED]


def test_junk_ids_never_merge_and_merge_dangerously_does() -> None:
    state = PersonsState(0, max_ids=10)
    applied = _apply(
        state,
        [
            (EdgeKind.IDENTIFY, "undefined", "alice"),
            (EdgeKind.IDENTIFY, " NULL ", "alice"),
            (EdgeKind.IDENTIFY, "nobody", "alice"),  # the project's own junk id
            (EdgeKind.IDENTIFY, "a1", "alice"),
            (EdgeKind.IDENTIFY, "b1", "bob"),
            (EdgeKind.ALIAS, "bob", "alice"),  # both identified: refused
            (EdgeKind.MERGE, "bob", "alice"),
        ],
    )
    assert [d.reason for d in applied.decisions[:3]] == ["junk id"] * 3
    assert applied.decisions[5].decision is Decision.REFUSED
    assert {_person(state, i) for i in ("a1", "alice", "b1", "bob")} == {"alice"}
    assert _person(state, "undefined") == "undefined"


def test_a_cap_on_ids_per_person() -> None:
    state = PersonsState(0, max_ids=3)
    applied = _apply(state, [(EdgeKind.IDENTIFY, f"a{i}", "alice") for i in range(4)])
    assert [d.decision for d in applied.decisions][-1] is Decision.REFUSED
    assert _person(state, "a3") == "a3"


def test_an_alias_keeps_the_identified_persons_name() -> None:
    state = PersonsState(0, max_ids=10)
    _apply(state, [(EdgeKind.IDENTIFY, "a1", "alice"), (EdgeKind.ALIAS, "alice", "alice@x")])
    assert _person(state, "alice@x") == "alice"


def test_a_split_gives_every_id_back_its_own_person() -> None:
    state = PersonsState(0, max_ids=10)
    _apply(state, [(EdgeKind.IDENTIFY, "a1", "alice"), (EdgeKind.IDENTIFY, "a2", "alice")])
    applied = _apply(state, [(EdgeKind.SPLIT, "", "a2")])
    assert {(o.distinct_id, o.person_id) for o in applied.overrides} == {
        ("a1", "a1"),
        ("a2", "a2"),
        ("alice", "alice"),
    }
    assert _person(state, "a1") == "a1"


def test_the_same_persons_after_a_reload() -> None:
    table, state = Table(), PersonsState(2, max_ids=10)
    _apply(state, [(EdgeKind.IDENTIFY, "a1", "alice"), (EdgeKind.IDENTIFY, "a2", "bob")])
    table.write(state.writes())
    _apply(state, [(EdgeKind.MERGE, "bob", "alice")])
    table.write(state.writes())
    again = PersonsState(2, max_ids=10)
    again.load(iter(table.data.items()))
    assert again.expected_offset == 3
    assert {_person(again, i) for i in ("a1", "a2", "bob")} == {"alice"}
    assert sorted(again.person_ids("p", "a2")) == ["a1", "a2", "alice", "bob"]


def test_edges_of_calls() -> None:
    def of(**fields: object) -> object:
        base: dict[str, object] = {
            "call": "track",
            "event": "x",
            "user_id": None,
            "anonymous_id": None,
            "previous_id": None,
            "properties": {},
        }
        return edge_of(**(base | fields))  # type: ignore[arg-type]

    assert of(user_id="u", anonymous_id="a") == (EdgeKind.IDENTIFY, "a", "u")
    assert of(user_id="u") is None
    assert of(call="alias", user_id="u", previous_id="p") == (EdgeKind.ALIAS, "p", "u")
    merge = of(event="$merge_dangerously", user_id="u", properties={"alias": "v"})
    assert merge == (EdgeKind.MERGE, "v", "u")
