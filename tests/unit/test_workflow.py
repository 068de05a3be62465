"""Exhaustive tests of the egress rules: every action in every state for every kind of actor."""

from __future__ import annotations

import itertools

import pytest

from egress.review.workflow import (
    TRANSITIONS,
    Decision,
    FileKind,
    Forbidden,
    GroupFacts,
    RequestAction,
    RequestActor,
    RequestFacts,
    State,
    Visibility,
    Vote,
    all_outputs_approved,
    can_create,
    check_request,
    comment_visible,
    completed_reviewers,
    counted_votes,
    file_status,
    independent_phase,
    may,
    next_state,
    submission_problems,
    visible_votes,
)

AUTHOR = "ann"
PERSONAS = {
    "author": RequestActor(AUTHOR, frozenset({"researcher"})),
    "author_checker": RequestActor(AUTHOR, frozenset({"researcher", "checker"})),
    "ex_author": RequestActor(AUTHOR, frozenset()),
    "researcher": RequestActor("rob", frozenset({"researcher"})),
    "lead": RequestActor("lee", frozenset({"lead"})),
    "checker": RequestActor("cat", frozenset({"checker"})),
    "checker2": RequestActor("cid", frozenset({"checker"})),
    "admin": RequestActor("ada", frozenset(), is_admin=True),
    "outsider": RequestActor("oz", frozenset()),
}
S = State
ALL = set(State)
OPEN_FOR_COMMENT = {S.SUBMITTED, S.UNDER_REVIEW, S.RETURNED, S.APPROVED}
AUTHORS = {"author", "author_checker"}
CHECKERS = {"checker", "checker2"}

# The specification, written independently of the implementation: (action, persona) -> states allowed,
# for a request with one output file, no votes and no download.
SPEC: dict[RequestAction, dict[str, set[State]]] = {
    RequestAction.VIEW: {
        "author": ALL,
        "author_checker": ALL,
        "admin": ALL,
        "lead": ALL - {S.DRAFT},
        "checker": ALL - {S.DRAFT},
        "checker2": ALL - {S.DRAFT},
    },
    RequestAction.EDIT: {p: {S.DRAFT, S.RETURNED} for p in AUTHORS},
    RequestAction.PRECHECK: {p: {S.DRAFT, S.RETURNED} for p in AUTHORS},
    RequestAction.SUBMIT: {p: {S.DRAFT, S.RETURNED} for p in AUTHORS},
    RequestAction.WITHDRAW: {p: {S.DRAFT, S.SUBMITTED, S.UNDER_REVIEW, S.RETURNED} for p in AUTHORS},
    RequestAction.VOTE: {p: {S.SUBMITTED, S.UNDER_REVIEW} for p in CHECKERS},
    RequestAction.COMMENT: {p: OPEN_FOR_COMMENT for p in AUTHORS | CHECKERS},
    RequestAction.RETURN: {},  # needs two complete reviews: see the vote tests below
    RequestAction.REJECT: {},
    RequestAction.APPROVE: {},
    RequestAction.RELEASE: {p: {S.APPROVED} for p in CHECKERS | {"admin"}},
    RequestAction.DOWNLOAD: {p: {S.RELEASED} for p in AUTHORS | {"lead"}},
    RequestAction.REVOKE: {"admin": {S.RELEASED}},
    RequestAction.RERUN: {p: OPEN_FOR_COMMENT for p in AUTHORS | CHECKERS},
}


def facts(state: State, votes=(), outputs=(1,), downloaded=False) -> RequestFacts:
    return RequestFacts(state, AUTHOR, frozenset(outputs), tuple(votes), downloaded)


def test_spec_covers_every_action():
    assert set(SPEC) == set(RequestAction)


@pytest.mark.parametrize(
    ("action", "persona", "state"), list(itertools.product(RequestAction, PERSONAS, State)), ids=str
)
def test_every_action_state_and_persona(action, persona, state):
    expected = state in SPEC[action].get(persona, set())
    f = facts(state)
    assert may(action, PERSONAS[persona], f) is expected
    if not expected:
        with pytest.raises(Forbidden) as err:
            check_request(action, PERSONAS[persona], f)
        assert str(err.value).endswith(".")  # a sentence a person can read


def test_transition_table():
    assert next_state(S.DRAFT, RequestAction.SUBMIT) is S.SUBMITTED
    assert next_state(S.RETURNED, RequestAction.SUBMIT) is S.SUBMITTED
    assert next_state(S.SUBMITTED, RequestAction.VOTE) is S.UNDER_REVIEW
    assert next_state(S.UNDER_REVIEW, RequestAction.VOTE) is S.UNDER_REVIEW
    assert next_state(S.UNDER_REVIEW, RequestAction.RETURN) is S.RETURNED
    assert next_state(S.UNDER_REVIEW, RequestAction.REJECT) is S.REJECTED
    assert next_state(S.UNDER_REVIEW, RequestAction.APPROVE) is S.APPROVED
    assert next_state(S.APPROVED, RequestAction.RELEASE) is S.RELEASED
    assert next_state(S.RELEASED, RequestAction.REVOKE) is S.REVOKED
    for s in (S.DRAFT, S.SUBMITTED, S.UNDER_REVIEW, S.RETURNED):
        assert next_state(s, RequestAction.WITHDRAW) is S.WITHDRAWN
    assert len(TRANSITIONS) == 13


@pytest.mark.parametrize(("state", "action"), list(itertools.product(State, RequestAction)), ids=str)
def test_no_transition_out_of_terminal_states_and_no_implicit_moves(state, action):
    if (state, action) in TRANSITIONS:
        assert state not in {S.REJECTED, S.WITHDRAWN, S.REVOKED}
    else:
        assert next_state(state, action) is state


def v(checker, decision, file_id=1):
    return Vote(checker, file_id, Decision(decision))


def test_two_different_checkers_approve():
    f = facts(S.UNDER_REVIEW, [v("cat", "approve"), v("cid", "approve")])
    assert all_outputs_approved(f)
    assert not independent_phase(f)
    for p in CHECKERS:
        check_request(RequestAction.APPROVE, PERSONAS[p], f)
    for p in set(PERSONAS) - CHECKERS:
        assert not may(RequestAction.APPROVE, PERSONAS[p], f), p
    assert not may(RequestAction.RETURN, PERSONAS["checker"], f)
    assert not may(RequestAction.REJECT, PERSONAS["checker"], f)


def test_single_checker_approval_is_not_enough():
    f = facts(S.UNDER_REVIEW, [v("cat", "approve")])
    assert not all_outputs_approved(f)
    assert not may(RequestAction.APPROVE, PERSONAS["checker"], f)
    # the same checker voting twice still counts once
    f = facts(S.UNDER_REVIEW, [v("cat", "approve"), v("cat", "approve")])
    assert file_status(AUTHOR, f.votes) == "pending"
    assert not all_outputs_approved(f)


def test_self_approval_does_not_count():
    f = facts(S.UNDER_REVIEW, [v(AUTHOR, "approve"), v("cat", "approve")])
    assert not all_outputs_approved(f)
    assert completed_reviewers(f) == {"cat"}
    with pytest.raises(Forbidden, match="own request"):
        check_request(RequestAction.VOTE, PERSONAS["author_checker"], f)


def test_every_output_file_must_be_approved():
    votes = [v("cat", "approve", 1), v("cid", "approve", 1), v("cat", "approve", 2)]
    f = facts(S.UNDER_REVIEW, votes, outputs=(1, 2))
    assert not all_outputs_approved(f)
    assert independent_phase(f)  # cid has not reviewed file 2
    f = facts(S.UNDER_REVIEW, [*votes, v("cid", "approve", 2)], outputs=(1, 2))
    assert all_outputs_approved(f)
    assert not all_outputs_approved(facts(S.UNDER_REVIEW, outputs=()))


def test_return_needs_two_complete_reviews_and_a_change_request():
    partial = facts(S.UNDER_REVIEW, [v("cat", "changes")])
    with pytest.raises(Forbidden, match="Two checkers"):
        check_request(RequestAction.RETURN, PERSONAS["checker"], partial)
    f = facts(S.UNDER_REVIEW, [v("cat", "changes"), v("cid", "approve")])
    assert file_status(AUTHOR, f.votes) == "changes"
    check_request(RequestAction.RETURN, PERSONAS["checker"], f)
    check_request(RequestAction.RETURN, PERSONAS["checker2"], f)
    assert not may(RequestAction.RETURN, PERSONAS["author_checker"], f)
    assert not may(RequestAction.RETURN, PERSONAS["lead"], f)
    with pytest.raises(Forbidden, match="reject"):
        check_request(RequestAction.REJECT, PERSONAS["checker"], f)
    assert not may(RequestAction.RETURN, PERSONAS["checker"], facts(S.SUBMITTED, f.votes))


def test_reject_needs_a_reject_vote():
    f = facts(S.UNDER_REVIEW, [v("cat", "reject"), v("cid", "approve")])
    assert file_status(AUTHOR, f.votes) == "rejected"
    check_request(RequestAction.REJECT, PERSONAS["checker2"], f)
    check_request(RequestAction.RETURN, PERSONAS["checker2"], f)
    assert not may(RequestAction.REJECT, PERSONAS["admin"], f)


def test_independent_phase_hides_other_votes_and_comments():
    one = facts(S.UNDER_REVIEW, [v("cat", "approve")])
    assert visible_votes(PERSONAS["checker2"], one) == []
    assert visible_votes(PERSONAS["checker"], one) == list(one.votes)
    assert visible_votes(PERSONAS["author"], one) == []
    assert visible_votes(PERSONAS["admin"], one) == list(one.votes)
    assert not comment_visible(PERSONAS["checker2"], one, "cat", Visibility.CHECKERS)
    assert not comment_visible(PERSONAS["author"], one, "cat", Visibility.AUTHOR)
    assert comment_visible(PERSONAS["checker"], one, "cat", Visibility.CHECKERS)
    assert comment_visible(PERSONAS["checker"], one, AUTHOR, Visibility.AUTHOR)

    both = facts(S.UNDER_REVIEW, [v("cat", "approve"), v("cid", "changes")])
    assert len(visible_votes(PERSONAS["checker2"], both)) == 2
    assert len(visible_votes(PERSONAS["author"], both)) == 2
    assert comment_visible(PERSONAS["checker2"], both, "cat", Visibility.CHECKERS)
    assert comment_visible(PERSONAS["author"], both, "cat", Visibility.AUTHOR)
    assert not comment_visible(PERSONAS["author"], both, "cat", Visibility.CHECKERS)
    assert comment_visible(PERSONAS["admin"], both, "cat", Visibility.CHECKERS)


def test_revoke_only_before_download():
    assert may(RequestAction.REVOKE, PERSONAS["admin"], facts(S.RELEASED))
    with pytest.raises(Forbidden, match="already been downloaded"):
        check_request(RequestAction.REVOKE, PERSONAS["admin"], facts(S.RELEASED, downloaded=True))


def test_can_create_needs_membership():
    assert can_create(PERSONAS["author"]) and can_create(PERSONAS["lead"])
    for p in ("checker", "admin", "outsider", "ex_author"):
        assert not can_create(PERSONAS[p])


def test_file_status_values():
    assert file_status(AUTHOR, []) == "pending"
    assert file_status(AUTHOR, [v("cat", "approve"), v("cid", "reject")]) == "rejected"
    assert file_status(AUTHOR, [v("cat", "approve"), v("cid", "approve"), v("oz", "reject")]) == "approved"


def test_submission_problems():
    ok = GroupFacts("tables", "Counts by region", "Cells < 10 suppressed", (("t.csv", FileKind.OUTPUT),))
    assert submission_problems([ok]) == []
    assert submission_problems([]) == ["Add at least one output file."]
    code = GroupFacts("code", "", " ", (("a.py", FileKind.SUPPORTING),))
    problems = submission_problems([code])
    assert problems[0] == "Add at least one output file."
    assert any("needs context" in p for p in problems) and any("needs controls" in p for p in problems)
    empty = GroupFacts("empty", "x", "y", ())
    assert any("no files" in p for p in submission_problems([ok, empty]))


def test_where_reproduction_is_required_an_unreproduced_output_needs_two_overrides():
    def approvals(*overrides: bool):
        return tuple(Vote(c, 1, Decision.APPROVE, o) for c, o in zip(("cat", "cid"), overrides, strict=False))

    plain = approvals(False, False)
    assert all_outputs_approved(facts(S.UNDER_REVIEW, plain))  # the rule is off: as before
    unreproduced = frozenset({1})

    def with_rule(votes):
        return RequestFacts(S.UNDER_REVIEW, AUTHOR, frozenset({1}), votes, unreproduced=unreproduced)

    assert not all_outputs_approved(with_rule(plain))
    assert not all_outputs_approved(with_rule(approvals(True, False)))
    assert all_outputs_approved(with_rule(approvals(True, True)))
    assert not may(RequestAction.APPROVE, PERSONAS["checker"], with_rule(plain))
    assert [v.checker for v in counted_votes(with_rule(approvals(True, False)), 1)] == ["cat"]
