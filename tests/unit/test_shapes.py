"""calsync.source.ews.shapes: a cached ItemShape is the element exchangelib would build, and
no two requests share one (a request's tree owns its elements)."""

from __future__ import annotations

from exchangelib.fields import FieldPath
from exchangelib.items import CalendarItem
from exchangelib.services import common, get_item, sync_folder_hierarchy
from exchangelib.version import EXCHANGE_2013, EXCHANGE_2016, Version
from lxml import etree

from calsync.source.ews import connection  # noqa: F401  (installs the adapters, the cache among them)
from calsync.source.ews.convert import FETCH_FIELDS


def fields(names: tuple[str, ...]) -> set[FieldPath]:
    return {FieldPath(field=CalendarItem.get_field_by_fieldname(n)) for n in names}


def test_cached_shape_is_what_exchangelib_builds_for_every_call() -> None:
    assert get_item.shape_element is not common.shape_element
    assert sync_folder_hierarchy.shape_element is get_item.shape_element
    for version in (Version(build=EXCHANGE_2013), Version(build=EXCHANGE_2016)):
        want = etree.tostring(common.shape_element("m:ItemShape", "IdOnly", fields(FETCH_FIELDS), version))
        for _ in range(3):
            got = get_item.shape_element("m:ItemShape", "IdOnly", fields(FETCH_FIELDS), version)
            assert etree.tostring(got) == want
    # Another field list, another shape.
    few = get_item.shape_element("m:ItemShape", "IdOnly", fields(("subject",)), Version(build=EXCHANGE_2016))
    assert etree.tostring(few) == etree.tostring(
        common.shape_element("m:ItemShape", "IdOnly", fields(("subject",)), Version(build=EXCHANGE_2016))
    )
    assert b"item:Subject" in etree.tostring(few) and b"item:Body" not in etree.tostring(few)


def test_each_request_gets_its_own_element() -> None:
    version = Version(build=EXCHANGE_2016)
    one = get_item.shape_element("m:ItemShape", "IdOnly", fields(FETCH_FIELDS), version)
    two = get_item.shape_element("m:ItemShape", "IdOnly", fields(FETCH_FIELDS), version)
    assert one is not two
    first, second = etree.Element("GetItem"), etree.Element("GetItem")
    first.append(one)
    second.append(two)
    one.clear()  # a request that changes its own copy does not change the next one's
    three = get_item.shape_element("m:ItemShape", "IdOnly", fields(FETCH_FIELDS), version)
    assert len(two) > 0 and etree.tostring(three) == etree.tostring(two)
    assert two.getparent() is second
