"""The status patch: a JSON merge patch must clear what went away at any depth."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from phaseshift.kube import merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, section 2, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def test_nested_keys_that_went_away_become_null() -> None:
    old = {"rollout": {"image": "a", "canary": {"lastCheckAt": "t", "iteration": 2}}, "phase": 4}
    new = {"rollout": {"image": "b", "canary": {"iteration": 0}}, "phase": 4}
    assert merge_patch(old, new) == {
        "rollout": {"image": "b", "canary": {"lastCheckAt": None, "iteration": 0}}
    }


def test_lists_are_replaced_whole_and_unchanged_values_left_out() -> None:
    old = {"history": [1, 2], "users": 5, "release": {"app": {"resources": {"cpu": "1"}}}}
    new = {"history": [1, 2, 3], "users": 5, "release": {"app": {}}}
    assert merge_patch(old, new) == {
        "history": [1, 2, 3],
        "release": {"app": {"resources": None}},
    }


# null never appears as a value in what the operator writes (to_json drops None)
objects = st.dictionaries(
    st.sampled_from("abcd"),
    st.recursive(
        st.booleans() | st.integers() | st.text(max_size=3),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from("abcd"), children, max_size=4)
        ),
        max_leaves=12,
    ),
    max_size=4,
)


@given(objects, objects)
def test_applying_the_patch_to_old_gives_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply_merge_patch(old, merge_patch(old, new)) == new
