"""Object names: deterministic, DNS-valid, bounded, and distinct between plans."""

from __future__ import annotations

import re

from render_helpers import names

from phaseshift.render.names import MAX_LABEL_VALUE, MAX_NAME_LENGTH, label_value, object_name

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def test_short_plan_names_read_plainly() -> None:
    assert object_name("shop", "postgres-rw") == "shop-postgres-rw"


def test_long_plan_name_is_truncated_with_a_hash_and_stays_valid() -> None:
    name = object_name("a" * 80, "postgres-replica")
    assert len(name) <= MAX_NAME_LENGTH
    assert DNS_1035.match(name)
    assert "postgres-replica" in name


def test_dotted_and_digit_leading_plan_names_become_dns_labels() -> None:
    for plan in ("shop.v2", "9lives", "a.b.c"):
        name = object_name(plan, "app")
        assert DNS_1035.match(name), name


def test_sanitised_names_do_not_collide_with_the_plain_name_they_resemble() -> None:
    # "shop.v2" sanitises to "shop-v2": the hash keeps the two plans apart.
    assert object_name("shop.v2", "app") != object_name("shop-v2", "app")


def test_label_value_is_bounded_and_distinct() -> None:
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert len(label_value(long_a)) <= MAX_LABEL_VALUE
    assert label_value(long_a) != label_value(long_b)
    assert label_value("shop") == "shop"


def test_no_suffix_is_a_dash_tail_of_another(render, make_plan) -> None:
    """Plans P and P-x could otherwise both own a name: P + 'x-s' == (P-x) + 's'."""
    plan = make_plan(
        overrides=[{"phase": 3, "shards": 2}, {"phase": 4, "shards": 2}],
        observability={"serviceMonitor": True, "prometheusRule": True},
    )
    suffixes = {
        obj["metadata"]["name"].removeprefix("shop-")
        for phase in (1, 2, 3, 4)
        for obj in render(phase, plan)
    }
    for a in suffixes:
        for b in suffixes:
            assert a == b or not a.endswith("-" + b), (a, b)


def test_names_are_unique_within_a_kind(render) -> None:
    for phase in (1, 2, 3, 4):
        objects = render(phase)
        for kind in {o["kind"] for o in objects}:
            listed = names(objects, kind)
            assert len(listed) == len(set(listed)), (phase, kind)
