"""The data stage's per-row fast paths against a straightforward reference (the stage as first
written): decoding a JSONL line, checking a row, reusing an input line that already is its output
line, the batch result, and the keep/drop decisions of a batch. Same rows accepted, same messages
for bad ones, same bytes out, on generated, real and hostile rows."""

from __future__ import annotations

import json
import random
from array import array
from bisect import bisect_left
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdem.data.filters import RowFilter, bytes_key, text_key
from holdem.data.source import InvalidRow, LineBatch, RowBatch, decode_line, loads_line, too_long_row
from holdem.data.stage import merge_batch
from holdem.data.stats import MAX_BAD_EXAMPLES, RunCounts
from holdem.data.validate import MAX_LABEL_CHARS, BadRow, _check_object, _label_kind, GoodRow, check_fields, check_row, label_kind, street_of
from holdem.data.work import process_rows, render_line, rendered_already
from holdem.pokerbench import LABEL_GRAMMAR, parse_instruction, parse_instruction_once
from holdem.rowgen import generate_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "pokerbench" / "examples.jsonl"
REAL = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]
GENERATED = list(generate_rows(300, seed=5))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- the reference: the per-row path as first written ----


def reference_decode_line(raw: bytes) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InvalidRow("not_utf8", f"not UTF-8 text (byte {exc.start}: {exc.reason}); re-encode the file as UTF-8")
    return loads_line(text)  # json.loads and its messages, without decode_line's fast path


def reference_label_kind(label: str) -> str | None:
    """label_kind without its cache (only the cache is new there)."""
    if len(label) > MAX_LABEL_CHARS:
        return None
    return _label_kind.__wrapped__(label)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def reference_check_row(obj, parse):
    bad = _check_object(obj)  # the shape checks every row goes through when check_fields' shortcut does not apply
    if bad is not None:
        return bad
    instruction, output = obj["instruction"], obj["output"]
    kind = reference_label_kind(output)
    if kind is None:
        return BadRow("label_grammar", f"label {_short(output)} is outside {LABEL_GRAMMAR}")
    street = street_of(instruction)
    if parse is not None:
        try:
            state = parse(instruction)
        except ValueError as exc:
            return BadRow("instruction_unparsed", f"instruction does not parse ({_short(str(exc), 120)})")
        except Exception as exc:  # noqa: BLE001
            return BadRow("instruction_unparsed",
                          f"instruction does not parse ({type(exc).__name__}: {_short(str(exc), 120)})")
        street = str(getattr(state, "street", street)).lower().split(".")[-1]
    return GoodRow(instruction, output, street, kind)


def reference_process_rows(batch, parse) -> tuple:
    """(n_rows, bad, good_pos, ikeys, lkeys, street_kind, data, ends) as the stage computed them."""
    rows = []
    if isinstance(batch, LineBatch):
        if batch.too_long:
            rows.append((f"{batch.name}:{batch.first_line}", too_long_row(batch.too_long)))
        else:
            for n, raw in enumerate(batch.data.split(b"\n")[:-1], start=batch.first_line):
                if raw.strip():
                    rows.append((f"{batch.name}:{n}", reference_decode_line(raw)))
    else:
        rows = [(f"{batch.prefix}#{batch.first_index + k}", obj) for k, obj in enumerate(batch.rows)]
    bad, good_pos, ikeys, lkeys, street_kind, lines, ends, size = [], [], [], [], [], [], [], 0
    for pos, (where, obj) in enumerate(rows):
        checked = reference_check_row(obj, parse)
        if isinstance(checked, BadRow):
            bad.append((pos, where, checked.reason, checked.detail))
            continue
        line = json.dumps({"instruction": checked.instruction, "output": checked.output}, ensure_ascii=False) + "\n"
        try:
            size += len(line.encode("utf-8"))
        except UnicodeEncodeError as exc:
            bad.append((pos, where, "not_encodable",
                        f"text holds a lone surrogate ({exc.object[exc.start:exc.end]!r}), which UTF-8 cannot encode"))
            continue
        lines.append(line)
        ends.append(size)
        good_pos.append(pos)
        ikeys.append(text_key(checked.instruction))
        lkeys.append(text_key(checked.output))
        street_kind.append((checked.street, checked.kind))
    return len(rows), bad, good_pos, ikeys, lkeys, street_kind, "".join(lines).encode("utf-8"), ends


def result_tuple(result) -> tuple:
    return (result.n_rows, result.bad, list(result.good_pos), list(result.ikeys), list(result.lkeys),
            result.street_kind, result.data, list(result.ends))


# ---- hostile lines ----

LABELS = ["fold", "call", "check", "bet 3", "raise 2.5", "all in", "allin", "Fold", "bet", "raise 1e5", "bet ٣",
          "x" * 70, "raise " + "9" * 60, " call", "call\n"]


def variants(obj: dict, rng: random.Random) -> list[bytes]:
    """The same row written in ways a JSONL file may hold it: only the first is the stage's own
    rendering; most others decode to the same value (some to a nearly equal one)."""
    canonical = json.dumps(obj, ensure_ascii=False)
    mid = '", "output": "'
    return [s.encode("utf-8", "surrogatepass") for s in (
        canonical,
        json.dumps(obj),  # ASCII escapes
        json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
        canonical.replace("\\n", "\\u000a", 1),
        canonical.replace("\\n", "\\u000A"),
        canonical.replace(mid, '",  "output": "'),
        canonical.replace(mid, '","output": "') + " ",
        canonical.replace(mid, '","output": "').replace('"}', '" }'),  # the same length
        canonical.replace(mid, '", "output":"').replace('{"instruction": "', '{ "instruction": "'),
        canonical.replace(mid, '","output":  "'),  # the same length, the spaces moved
        canonical.replace(mid, '",  "output":"'),
        canonical.replace('{"instruction": "', '{"instruction":"').replace(mid, '", "output":  "'),
        canonical + "\r",
        " " + canonical,
        "\ufeff" + canonical,
        canonical[:-1] + ', "extra": 1}',
        '{"output": "fold", ' + canonical[1:],
        canonical[:-1] + ', "output": ' + json.dumps(obj.get("output", "")) + "}",
        '{"instruction": "", ' + canonical[1:],
        json.dumps({"output": obj.get("output"), "instruction": obj.get("instruction")}, ensure_ascii=False),
        canonical.replace("a", "\\u0061", 1),
        canonical.replace("/", "\\/", 1),
        canonical.replace('"instruction"', '"\\u0069nstruction"'),
        canonical[: rng.randrange(len(canonical) + 1)],
    )]


def hostile_lines(rng: random.Random, n: int) -> list[bytes]:
    bases = REAL + GENERATED
    lines = []
    for _ in range(n):
        row = dict(rng.choice(bases))
        roll = rng.random()
        if roll < 0.15:
            row["output"] = rng.choice(LABELS)
        elif roll < 0.3:
            text = row["instruction"]
            i = rng.randrange(len(text))
            row["instruction"] = text[:i] + rng.choice(["\ud800", '"', "\\", "\t", "\x00", "é", "\u2028", "\n", ""]) + text[i + 1:]
        elif roll < 0.35:
            row = rng.choice([{"instruction": 1, "output": "fold"}, {"output": "fold"}, {}, {"instruction": "x"},
                              {"instruction": row["instruction"], "output": None}])
        lines.extend(rng.sample(variants(row, rng), 3))
        if rng.random() < 0.1:
            lines.append(rng.choice([b"[1, 2]", b"null", b"\xff\xfe{}", b"{" * 3000 + b"}" * 3000, b"[" * 100000,
                                     b'{"a": ' + b"1" * 5000 + b"}", b"{]", b"   ", b"", b'{"a": NaN}', b"\x00"]))
    return lines


# ---- tests ----


@SETTINGS
@given(st.binary(max_size=80) | st.builds(lambda s: s.encode("utf-8", "surrogatepass"), st.text(max_size=40)))
def test_decode_line_equals_json_loads_on_any_bytes(raw):
    assert repr(decode_line(raw)) == repr(reference_decode_line(raw))


@pytest.mark.parametrize(
    "raw",
    [b'{"a": 1} x', b'{"a": 1}{}', b'{"a": 1}\r', b"{}  ", b'{"a": 1} \x00', b"{", b"{}", b'{"a": NaN, "b": -Infinity}',
     b'{"a": "\\ud800"}', b'{"a": "\x01"}', b'{"a": 1, "a": 2}', b"{" * 50000, b'{"a": ' + b"[" * 50000,
     b'{"a": ' + b"7" * 5000 + b"}", b'{"a": 1.5e999}', b"\xef\xbb\xbf{}", b'{"a": "\xff"}', b"\t{}"],
)
def test_decode_line_equals_json_loads_on_edge_lines(raw):
    assert repr(decode_line(raw)) == repr(reference_decode_line(raw))


def test_decode_line_equals_json_loads_on_hostile_lines():
    for raw in hostile_lines(random.Random(1), 400):
        if b"\n" not in raw:
            assert repr(decode_line(raw)) == repr(reference_decode_line(raw))


def _values(raw: bytes):
    obj = reference_decode_line(raw)
    if isinstance(obj, dict) and isinstance(obj.get("instruction"), str) and isinstance(obj.get("output"), str):
        return obj
    return None


def assert_sound(raw: bytes) -> bytes | None:
    """rendered_already on `raw` is None, or `raw` is exactly the rendered line."""
    obj = _values(raw)
    if obj is None:
        return None
    head = rendered_already(raw, len(obj), obj["instruction"], obj["output"])
    if head is not None:
        assert raw == render_line(obj["instruction"], obj["output"]).encode("utf-8")
        assert head == obj["instruction"].encode("utf-8")
    return head


TEXT = st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from('\n"\\\t\r\x00/'), max_size=30)


@SETTINGS
@given(TEXT, TEXT, st.integers(0, 2**32))
def test_a_line_is_reused_only_when_it_is_the_rendered_line(instruction, output, seed):
    rng = random.Random(seed)
    forms = variants({"instruction": instruction, "output": output}, rng)
    head = assert_sound(forms[0])
    plain = not any(c in instruction + output for c in '"\\') and all(c >= " " or c == "\n" for c in instruction + output)
    assert (head is not None) == plain  # the rendered line itself is recognised whenever it can be
    for raw in forms[1:]:
        assert_sound(raw)


def test_generated_and_real_lines_are_reused_and_other_spellings_are_not():
    rng = random.Random(2)
    reused = 0
    for row in REAL + GENERATED:
        forms = variants(row, rng)
        reused += assert_sound(forms[0]) is not None
        for raw in forms[1:-1]:  # the same value written otherwise: never taken for the rendered line
            assert raw == forms[0] or assert_sound(raw) is None
        assert_sound(forms[-1])
    assert reused == len(REAL) + len(GENERATED)


@pytest.mark.parametrize("parse", [parse_instruction_once, parse_instruction, None])
def test_process_rows_equals_the_reference_on_hostile_batches(parse):
    rng = random.Random(3)
    for first_line in (1, 1000):
        lines = hostile_lines(rng, 150)
        data = b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines)
        batch = LineBatch("in.jsonl", first_line, data)
        assert result_tuple(process_rows(batch, parse)) == reference_process_rows(batch, parse)
    batch = LineBatch("in.jsonl", 7, b"", too_long=5_000_000)
    assert result_tuple(process_rows(batch, parse)) == reference_process_rows(batch, parse)


def test_process_rows_equals_the_reference_on_decoded_rows():
    rng = random.Random(4)
    rows = [reference_decode_line(raw) for raw in hostile_lines(rng, 100) if b"\n" not in raw]
    rows += [[1], None, "row", 3.5, {"instruction": "x", "output": 5}, REAL[0], dict(REAL[1], extra=[1])]
    batch = RowBatch("hub[train]", 40, rows)
    for parse in (parse_instruction_once, None):
        assert result_tuple(process_rows(batch, parse)) == reference_process_rows(batch, parse)


def test_the_bench_rows_come_out_as_their_input_lines():
    """Generated rows are written by json.dumps(ensure_ascii=False): each is its own output line."""
    data = b"".join(json.dumps(row, ensure_ascii=False).encode() + b"\n" for row in GENERATED)
    result = process_rows(LineBatch("rows.jsonl", 1, data), parse_instruction_once)
    assert result.data == data and not result.bad
    assert list(result.ikeys) == [bytes_key(row["instruction"].encode()) for row in GENERATED]


class Street:
    def __str__(self) -> str:
        return "Street.TURN"


class Named(str):
    pass


@pytest.mark.parametrize(
    "obj",
    [{"instruction": Named(REAL[0]["instruction"]), "output": "fold"},
     {"instruction": REAL[0]["instruction"], "output": Named("fold")},
     type("Row", (dict,), {})(REAL[2]),
     {"instruction": None, "output": "fold"}, {"output": "fold"}, {"instruction": REAL[0]["instruction"]},
     {"instruction": REAL[0]["instruction"], "output": b"fold"}, InvalidRow("invalid_json", "nope"), [REAL[0]], None,
     {"instruction": REAL[0]["instruction"], "output": "fold", "extra": 1}, dict(REAL[3])],
)
def test_check_fields_and_check_row_equal_the_reference_on_odd_objects(obj):
    parsers = [parse_instruction_once, None, lambda text: Street(), lambda text: object(),
               lambda text: type("S", (), {"street": "Flop"})(), lambda text: 1 / 0,
               lambda text: type("S", (), {"street": property(lambda self: 1 / 0)})()]
    for parse in parsers[:-1]:
        expected = reference_check_row(obj, parse)
        assert check_row(obj, parse) == expected
        fields = check_fields(obj, parse)
        assert fields == (expected if isinstance(expected, BadRow) else tuple(vars(expected).values()))
    with pytest.raises(ZeroDivisionError):  # as before: a parser's state whose street raises is a bug
        reference_check_row(dict(REAL[0]), parsers[-1])
    with pytest.raises(ZeroDivisionError):
        check_row(dict(REAL[0]), parsers[-1])


def test_label_kind_equals_the_reference():
    for label in LABELS + ["raise 2.0", "bet 10.55", "all in ", "check" * 20, "", "bet 1" + "0" * 58]:
        for _ in range(2):  # the second time from the cache
            assert label_kind(label) == reference_label_kind(label)


# ---- keep/drop decisions of a batch ----


def _twin_filters(rng: random.Random, flags: tuple) -> tuple[RowFilter, RowFilter]:
    test_keys = {rng.randrange(30) for _ in range(5)} if flags[2] or rng.random() < 0.5 else None
    conflicts = {rng.randrange(30) for _ in range(4)}
    return tuple(RowFilter(flags[0], flags[1], test_keys, flags[2], set(conflicts)) for _ in range(2))


def _state(rows: RowFilter) -> tuple:
    return rows.found, rows.labels._labels, rows.labels.conflicted, rows._pairs, rows.conflicting_instructions()


@pytest.mark.parametrize("flags", [(d, c, t) for d in (False, True) for c in (False, True) for t in (False, True)])
def test_decide_many_equals_decide_keys_row_by_row(flags):
    rng = random.Random(sum(flags) * 7 + flags[0])
    fast, slow = _twin_filters(rng, flags)
    for _ in range(40):
        n_all = rng.randrange(0, 60)
        ikeys = array("Q", (rng.randrange(30) for _ in range(n_all)))
        lkeys = array("Q", (rng.choice((2**64 - 1, 0, 1, 5)) for _ in range(n_all)))
        n = rng.randrange(0, n_all + 1)
        reasons = [slow.decide_keys(ikeys[j], lkeys[j]) for j in range(n)]
        got = fast.decide_many(ikeys, lkeys, n)
        assert got == (None if all(r is None for r in reasons) else reasons)
        assert _state(fast) == _state(slow)


class _Writer:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int]] = []

    def write_lines(self, data, rows: int) -> None:
        self.calls.append((bytes(data), rows))


def reference_merge(result, fail_fast: bool, rows: RowFilter, counts: RunCounts, writer: _Writer) -> bool:
    """merge_batch as first written: decide_keys row by row."""
    bad, cutoff, stop = result.bad, result.n_rows, False
    if bad and fail_fast:
        room = MAX_BAD_EXAMPLES - len(counts.bad_examples)
        if len(bad) >= room:
            bad, stop = bad[:room], True
            cutoff = bad[-1][0] + 1
    for _, where, reason, detail in bad:
        counts.add_bad(where, reason, detail)
    counts.rows_in += cutoff
    n_good = bisect_left(result.good_pos, cutoff)
    data = memoryview(result.data)
    seg_from = start = seg_rows = 0
    for j in range(n_good):
        reason = rows.decide_keys(result.ikeys[j], result.lkeys[j])
        if reason is None:
            counts.kept[result.street_kind[j]] += 1
            seg_rows += 1
        else:
            counts.dropped[reason] += 1
            if seg_rows:
                writer.write_lines(data[seg_from:start], seg_rows)
            seg_from, seg_rows = result.ends[j], 0
        start = result.ends[j]
    if seg_rows:
        writer.write_lines(data[seg_from:start], seg_rows)
    return stop


@pytest.mark.parametrize("fail_fast", [False, True])
@pytest.mark.parametrize("flags", [(False, False, False), (True, False, False), (True, True, True)])
def test_merge_batch_writes_and_counts_as_the_reference(flags, fail_fast):
    rng = random.Random(9)
    lines = [json.dumps(rng.choice(GENERATED[:40] + REAL), ensure_ascii=False).encode() for _ in range(300)]
    for k in range(0, 300, 23):
        lines[k] = rng.choice([b"[1]", b"{}", b'{"instruction": "x", "output": "fold"}'])
    batches = [process_rows(LineBatch("in.jsonl", 1 + 30 * k, b"\n".join(lines[30 * k : 30 * k + 30]) + b"\n"),
                            parse_instruction_once) for k in range(10)]
    test_keys = {text_key(row["instruction"]) for row in REAL[:3]}
    fast_rows, slow_rows = (RowFilter(flags[0], flags[1], test_keys, flags[2], {text_key(REAL[4]["instruction"])})
                            for _ in range(2))
    fast_counts, slow_counts, fast_out, slow_out = RunCounts(), RunCounts(), _Writer(), _Writer()
    for result in batches:
        stop = merge_batch(result, fail_fast, fast_rows, fast_counts, fast_out)
        assert reference_merge(result, fail_fast, slow_rows, slow_counts, slow_out) == stop
        assert fast_out.calls == slow_out.calls
        assert list(fast_counts.kept.items()) == list(slow_counts.kept.items())  # the same order too (stats file)
        assert (fast_counts.dropped, fast_counts.bad_rows, fast_counts.bad_examples, fast_counts.rows_in) == \
            (slow_counts.dropped, slow_counts.bad_rows, slow_counts.bad_examples, slow_counts.rows_in)
        assert _state(fast_rows) == _state(slow_rows)
        if stop:
            break
    assert fast_counts.kept and fast_counts.bad_rows
