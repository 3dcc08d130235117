"""The pages served about the grids: computed once per change, shared, and exactly the exposition format."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from gridwatch.api import Sample
from gridwatch.web.exposition import SampleText, join
from gridwatch.web.memo import Memo


def parsed(text: str, openmetrics: bool = False) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    parse = parse_openmetrics if openmetrics else parse_text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in parse(text) for s in f.samples}


def test_two_checks_yielding_one_metric_make_one_family_and_a_repeated_series_shows_once(caplog):
    east = [Sample("gridwatch_x", {"grid": "E1"}, 1.0), Sample("gridwatch_y", {}, 2.5)]
    west = [Sample("gridwatch_x", {"grid": "W1"}, 3.0), Sample("gridwatch_x", {"grid": "E1"}, 9.0)]
    families = SampleText().render([("east", {"gridwatch_x": "X per grid"}, east), ("west", {}, west)])
    text = join(families, openmetrics=False)
    assert text.count("# TYPE gridwatch_x gauge") == 1 and "# HELP gridwatch_x X per grid" in text
    assert parsed(text) == {
        ("gridwatch_x", (("grid", "E1"),)): 1.0,  # east's, which came first
        ("gridwatch_x", (("grid", "W1"),)): 3.0,
        ("gridwatch_y", ()): 2.5,
    }
    assert [r.getMessage() for r in caplog.records] == ["check west repeats series gridwatch_x; kept the first"]


def test_label_values_and_help_are_escaped_for_both_formats():
    odd = 'a "quoted" back\\slash\nnew line 网格'
    samples = [Sample("gridwatch_odd", {"grid": odd, "n": "1"}, 0.5), Sample("gridwatch_odd", {"grid": "g"}, 1e21)]
    families = SampleText().render([("c", {"gridwatch_odd": 'help with "quotes" \\ and\nlines'}, samples)])
    for openmetrics in (False, True):
        text = join(families, openmetrics) + ("# EOF\n" if openmetrics else "")
        assert parsed(text, openmetrics) == {
            ("gridwatch_odd", (("grid", odd), ("n", "1"))): 0.5,
            ("gridwatch_odd", (("grid", "g"),)): 1e21,
        }
        [family] = (parse_openmetrics if openmetrics else parse_text)(text)
        assert family.documentation == 'help with "quotes" \\ and\nlines'


def test_a_series_keeps_its_label_text_across_renders_but_shows_its_new_value():
    text = SampleText()
    first = join(text.render([("c", {}, [Sample("gridwatch_v", {"grid": "G1"}, 1.0)])]), False)
    second = join(text.render([("c", {}, [Sample("gridwatch_v", {"grid": "G1"}, 2.0)])]), False)
    assert parsed(first) == {("gridwatch_v", (("grid", "G1"),)): 1.0}
    assert parsed(second) == {("gridwatch_v", (("grid", "G1"),)): 2.0}
    gone = join(text.render([("c", {}, [])]), False)
    assert gone == ""  # a series no check yields any more is not shown


def test_concurrent_requests_share_one_computation_until_an_input_is_replaced():
    calls: list[int] = []
    release = threading.Event()
    current = {"samples": [1, 2, 3]}

    def compute(samples: list[int]) -> int:
        calls.append(len(samples))
        release.wait(5)
        return sum(samples)

    async def main() -> None:
        with ThreadPoolExecutor(2) as pool:
            memo = Memo(lambda: (current["samples"],), compute, pool)
            waiters = [asyncio.create_task(memo.get()) for _ in range(50)]
            await asyncio.sleep(0.05)
            waiters[0].cancel()  # one client gone: the others still get their answer
            release.set()
            answers = await asyncio.gather(*waiters[1:])
            assert answers == [6] * 49 and calls == [3]
            assert await memo.get() == 6 and calls == [3]  # nothing changed: nothing computed
            current["samples"].append(4)  # changed in place: not an input change (the contract)
            assert await memo.get() == 6 and calls == [3]
            current["samples"] = [10, 20]  # replaced: computed again, once
            assert await asyncio.gather(memo.get(), memo.get()) == [30, 30] and calls == [3, 2]

    asyncio.run(main())
