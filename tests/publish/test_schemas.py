"""The channel schemas are the public contract (p9cli/schemas/, docs/channels.md).

One short real run records what bots receive: ``p9 sim`` (real time) + history fetched from it +
``analyze`` + ``p9 stream`` on all three exchanges into the suite's Redis. Every message of the
five channels (and the worker status keys) validates, so do the structure documents ``analyze``
wrote and the example payloads of docs/channels.md. Mutations of those real messages (wrong
type, missing field, unknown timeframe, extra field in a closed object) are rejected: the
schemas are tight enough to catch a producer's mistake."""

from __future__ import annotations

import copy
import io
import json
import re
import sys
from decimal import Decimal
from importlib import resources
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script (--write)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sim"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "history"))

from e2e_helpers import ThreadSubscriber, fetched_and_analyzed  # noqa: E402
from simutil import start_sim  # noqa: E402

from p9cli.fusion import position as pos  # noqa: E402
from p9cli.fusion.level_events import LevelEvents  # noqa: E402
from p9cli.publish import STATUS, SchemaViolation, validate_message  # noqa: E402
from p9cli.publish.channels import CHANNEL_KINDS, PAIR_KINDS, SCHEMA_IDS, worker_channel  # noqa: E402
from p9cli.publish.validate import validator_for  # noqa: E402
from p9cli.services import stream as service  # noqa: E402

EXCHANGES = ("binance", "bybit", "okx")
SYMBOL = "solusdt"
RUN_S = 6
DOCS = Path(__file__).resolve().parents[2] / "docs" / "channels.md"


def _schema_docs() -> dict[str, dict]:
    out = {}
    for f in resources.files("p9cli.schemas").iterdir():
        if f.name.endswith(".schema.json"):
            out[f.name] = json.loads(f.read_text(encoding="utf-8"))
    return out


# ---------------------------------------------------------------- the schema files themselves


def test_schema_files_are_valid_draft_2020_12_and_every_object_is_closed_deliberately():
    docs = _schema_docs()
    assert {"envelope.schema.json", "structure_message.schema.json"} <= set(docs)
    open_objects = []

    def walk(node, where):
        if isinstance(node, dict):
            if "properties" in node and not {"additionalProperties", "unevaluatedProperties"} & set(node):
                open_objects.append(where)
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    for name, doc in docs.items():
        Draft202012Validator.check_schema(doc)
        assert doc["$id"].endswith("/" + name)
        if name != "envelope.schema.json":
            walk(doc, name)
    # the shared envelope parts are closed by the channel schema that uses them (unevaluatedProperties)
    env = docs["envelope.schema.json"]["$defs"]
    for d, node in env.items():
        if "properties" in node and d not in ("pair_envelope", "status_envelope"):
            assert node.get("additionalProperties") is False, f"envelope $defs/{d} is open"
    assert not open_objects, open_objects
    for kind in CHANNEL_KINDS:
        title = (
            docs[f"{kind}.schema.json"]["title"]
            if kind != "structure"
            else docs["structure.schema.json"]["title"]
        )
        assert title == SCHEMA_IDS[kind]


# ---------------------------------------------------------------- one real run


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(messages per channel as raw bytes, structure documents analyze wrote, worker status key).

    A private server (pub/sub channels are server-wide: no other test's stream can mix in)."""
    from p9cli.publish.embedded import EmbeddedRedis

    data = tmp_path_factory.mktemp("schemas")
    worker = "w-schemas"
    channels = [f"{k}:{ex}:{SYMBOL}" for ex in EXCHANGES for k in PAIR_KINDS] + [STATUS]
    server = EmbeddedRedis.start()
    url = f"redis://{server.host}:{server.port}/0"
    thread = rec = None
    try:
        thread, handle = start_sim(speed=1.0, start_ms=None)
        rec = ThreadSubscriber(url, [*channels, worker_channel(worker)])
        settings = fetched_and_analyzed(
            handle, data, symbols="sol", exchanges=EXCHANGES, redis_url=url, worker_id=worker
        )
        rec.start()
        out = io.StringIO()
        assert service.run(settings, duration=RUN_S, quick_test=False, out=out) == 0, out.getvalue()
    finally:
        if rec is not None:
            rec.close()
        if thread is not None:
            thread.stop()
        server.stop()
    docs = [json.loads(p.read_text()) for p in sorted((data / "context").glob("*/*.json"))
            if not p.name.endswith(".failed.json")]  # fmt: skip
    return dict(rec.messages), docs, worker_channel(worker)


def _latest(recorded, kind: str, exchange: str = "okx") -> tuple[str, dict]:
    msgs = recorded[0]
    ch = STATUS if kind == STATUS else recorded[2] if kind == "worker" else f"{kind}:{exchange}:{SYMBOL}"
    return ch, orjson.loads(msgs[ch][-1])


def test_every_real_message_and_structure_document_validates(recorded):
    msgs, docs, worker_key = recorded
    expected = [f"{k}:{ex}:{SYMBOL}" for ex in EXCHANGES for k in PAIR_KINDS] + [STATUS, worker_key]
    missing = [ch for ch in expected if not msgs.get(ch)]
    assert not missing, f"nothing recorded on {missing}"
    n = 0
    for ch in expected:
        for raw in msgs[ch]:
            validate_message(ch, raw)
            n += 1
    assert n >= 3 * (RUN_S * 4)  # fusion_data alone is offered on change, up to 4/s
    # what the run proves beyond the types: every pair had a structure and a live book
    for ex in EXCHANGES:
        fd = [orjson.loads(m) for m in msgs[f"fusion_data:{ex}:{SYMBOL}"]]
        assert any(m["book"] and m["position"] for m in fd), ex
    assert len(docs) == len(EXCHANGES)
    for doc in docs:  # a document as analyze wrote it is the structure message minus the envelope
        assert not list(validator_for("structure").iter_errors(dict(doc, seq=0, stale=False)))
        with pytest.raises(SchemaViolation, match="'seq' is a required property"):
            validate_message(f"structure:{doc['exchange']}:{doc['symbol']}", doc)


def test_level_events_and_size_hints_from_the_producers_validate(recorded):
    """Shapes a short run does not reach (a level event, the size hint needs 30 s of trades): the
    producing functions on the run's real structure document, inside real messages."""
    ch, fd = _latest(recorded, "fusion_data", "binance")
    doc = orjson.loads(recorded[0][f"structure:binance:{SYMBOL}"][-1])
    level = next(lv for lv in doc["levels"] if lv["price"] < fd["price"])
    ev = LevelEvents()
    atr = pos.atr_of(doc, "1h")
    ev.update(doc["levels"], fd["price"], fd["price"], fd["price"], 0.1 * atr, 0.5 * atr, fd["event_ts"])
    lo = level["price"] - atr
    ev.update(doc["levels"], lo, fd["price"], lo, 0.1 * atr, 0.5 * atr, fd["event_ts"] + 250)
    assert any(e["type"] == "break" and e["level"] == level["price"] for e in ev.events), list(ev.events)
    validate_message(ch, dict(fd, events=ev.recent()))
    ch, pc = _latest(recorded, "precision9_context", "binance")
    sup, res = pos.nearest_levels(doc, pc["price"])
    hints = pos.hints(doc, sup, res, 40.0)
    assert hints["size"] is not None and hints["stop"] is not None
    validate_message(ch, dict(pc, hints=hints))


def test_payloads_without_structure_and_with_the_book_out_of_sync_validate(recorded):
    """The producer's payloads before a structure document exists and while the book resyncs
    (``PairState`` fed the recorded run's real trade and book top): structure fields null."""
    from p9cli.fusion.state import PairState
    from p9cli.publish.channels import FUSION_DATA, MARKET_CONTEXT, PRECISION9_CONTEXT, envelope

    _, fd = _latest(recorded, "fusion_data", "okx")
    b = fd["book"]
    st = PairState("okx", "sol", SYMBOL, None)
    st.on_trade(fd["event_ts"], fd["price"], 0.5, True, None)
    st.on_book(
        [(b["bid"], b["bid_size"])], [(b["ask"], b["ask_size"])], b["update_id"], None, fd["event_ts"], None
    )
    now = fd["event_ts"] + 100
    for book_valid in (True, False):
        if not book_valid:
            st.book_invalid()
        fields = {
            FUSION_DATA: st.fusion_fields(now) or {},
            MARKET_CONTEXT: st.market_context_fields(now),
            PRECISION9_CONTEXT: st.precision9_fields(now),
        }
        assert fields[FUSION_DATA], "nothing changed?"
        assert fields[FUSION_DATA]["position"] is None and fields[MARKET_CONTEXT]["structure"] is None
        assert (fields[FUSION_DATA]["book"] is None) is (not book_valid)
        for kind, f in fields.items():
            validate_message(
                f"{kind}:okx:{SYMBOL}",
                envelope(kind, exchange="okx", symbol=SYMBOL, event_ts=fd["event_ts"], stale=True, **f),
            )


def _decimals(x: float) -> int:
    return max(0, -Decimal(repr(x)).as_tuple().exponent)


def test_computed_numbers_of_the_real_run_have_the_instruments_precision(recorded):
    """What p9 computes live is rounded to the pair's structure document: prices to its tick,
    sizes to its qty_step, quote values to 0.01, ratios to 6 decimals (docs/channels.md)."""
    from p9cli.analysis.units import decimals_of

    msgs = recorded[0]
    checked = set()
    for ex in EXCHANGES:
        doc = orjson.loads(msgs[f"structure:{ex}:{SYMBOL}"][-1])
        tick, step = doc["tick"], doc["qty_step"]
        pd, sd = decimals_of(tick), decimals_of(step)
        fd = orjson.loads(msgs[f"fusion_data:{ex}:{SYMBOL}"][-1])
        pc = orjson.loads(msgs[f"precision9_context:{ex}:{SYMBOL}"][-1])
        mc = orjson.loads(msgs[f"market_context:{ex}:{SYMBOL}"][-1])
        for book in (fd["book"], mc["live"]["book"]):
            if book is None:
                continue
            assert _decimals(book["mid"]) <= pd + 1 and _decimals(book["spread"]) <= pd, (ex, book)
            assert _decimals(book["spread_bps"]) <= 6 and _decimals(book["imbalance_top"]) <= 6, (ex, book)
            for band in book["depth"].values():
                assert max(_decimals(band["bid_size"]), _decimals(band["ask_size"])) <= sd, (ex, band)
                assert max(_decimals(band["bid_quote"]), _decimals(band["ask_quote"])) <= 2, (ex, band)
            checked.add("book")
        for flow in (fd["flow"], mc["live"]["flow"]):
            for k in ("vwap_60s", "vwap_300s"):
                assert flow[k] is None or _decimals(flow[k]) <= pd, (ex, k, flow[k])
            for k in ("volume_60s", "buy_volume_60s", "sell_volume_60s", "delta_60s", "cvd"):
                assert _decimals(flow[k]) <= sd, (ex, k, flow[k])
            assert _decimals(flow["quote_volume_60s"]) <= 2, (ex, flow)
            checked.add("flow")
        for side in ("support", "resistance"):
            lv = pc["levels"][side]
            if lv is not None:
                assert _decimals(lv["distance_pct"]) <= 6, (ex, lv)
                assert all(v is None or _decimals(v) <= 6 for v in lv["distance_atr"].values()), (ex, lv)
                checked.add("levels")
        stop = (pc["hints"] or {}).get("stop")
        if stop:
            for k in ("long", "short"):
                if stop[k] is not None:  # on the tick: a multiple of it
                    assert Decimal(repr(stop[k])) % Decimal(repr(tick)) == 0, (ex, k, stop[k], tick)
                    checked.add("stop")
    assert {"book", "flow", "levels", "stop"} <= checked, checked


MUTATIONS = [
    # (kind, exchange, mutation, expected path in the message)
    ("fusion_data", lambda m: m["book"].update(update_id=str(m["book"]["update_id"])), "book/update_id"),
    ("fusion_data", lambda m: m["book"].update(update_id=m["book"]["update_id"] + 0.5), "book/update_id"),
    ("fusion_data", lambda m: m["book"].update(spred_bps=1.0), "book"),
    ("fusion_data", lambda m: m["candles"].update({"2m": next(iter(m["candles"].values()))}), "candles"),
    ("fusion_data", lambda m: next(iter(m["candles"].values()))["forming"].pop("closed"), "forming"),
    (
        "fusion_data",
        lambda m: next(iter(m["candles"].values()))["forming"].update(open_time=1.5e12 + 0.5),
        "open_time",
    ),
    ("fusion_data", lambda m: m["flow"].update(cvd=None), "flow/cvd"),
    ("fusion_data", lambda m: m.pop("seq"), "(top)"),
    ("fusion_data", lambda m: m.update(latency_ms=3), "(top)"),
    ("fusion_data", lambda m: m["position"].update(value_area="inside_va"), "position/value_area"),
    ("fusion_data", lambda m: m["freshness"].update(stale_sources=["bok"]), "stale_sources"),
    ("precision9_context", lambda m: m["bias"].update(sign=2), "bias/sign"),
    ("precision9_context", lambda m: m["bias"].update(confidence=1.5), "bias/confidence"),
    ("precision9_context", lambda m: m["atr"].update({"2d": 1.0}), "atr"),
    ("precision9_context", lambda m: m["regime"].update(label="calm"), "regime/label"),
    (
        "precision9_context",
        lambda m: (m["levels"]["support"] or m["levels"]["resistance"])["distance_atr"].pop("1h"),
        "distance_atr",
    ),
    ("precision9_context", lambda m: m["hints"]["stop"].pop("atr_mult"), "hints/stop"),
    ("precision9_context", lambda m: m.update(exchange="kraken"), "exchange"),
    ("market_context", lambda m: m["structure"]["levels"][0].update(price="1"), "structure/levels/0/price"),
    ("market_context", lambda m: m["live"].update(trades_per_s=3), "live"),
    ("market_context", lambda m: m["fusion"]["bias"].update(tf_alignment={"1h": 0.5}), "tf_alignment"),
    (STATUS, lambda m: m["workers"][0]["feeds"][0].update(state="ok"), "state"),
    (STATUS, lambda m: m["workers"][0]["publisher"].update(flushes=-1), "flushes"),
    (STATUS, lambda m: m.update(symbol="solusdt"), "(top)"),
    ("worker", lambda m: m.pop("publisher"), "(top)"),
    ("structure", lambda m: m.update(levels_=[]), "(top)"),
]


@pytest.mark.parametrize(
    "kind,mutate,path", MUTATIONS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(MUTATIONS)]
)
def test_schemas_reject_what_a_bot_could_not_rely_on(recorded, kind, mutate, path):
    ch, good = _latest(recorded, kind)
    validate_message(ch, good)
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises(SchemaViolation) as err:
        validate_message(ch, bad)
    assert f"{ch}: " in str(err.value) and path in str(err.value), str(err.value)


def test_docs_channels_examples_are_real_and_valid():
    """Every example in docs/channels.md marked ``<!-- example: CHANNEL -->`` validates."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: (\S+) -->\s*```json\n(.*?)```", text, flags=re.S)
    kinds = set()
    for ch, body in found:
        validate_message(ch, body.encode())
        kinds.add(ch.split(":")[0])
    assert kinds >= {"market_context", "fusion_data", "precision9_context", STATUS}, kinds
    # the field tables are generated from the schemas: every field name of the channel schemas is there
    names: set[str] = set()

    def collect(node):
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    for name, doc in _schema_docs().items():
        if name not in ("structure.schema.json", "structure_message.schema.json"):
            collect(doc)
    missing = sorted(n for n in names if f"`{n}`" not in text and f".{n}`" not in text)
    assert not missing, f"fields missing from docs/channels.md: {missing}"


# ---------------------------------------------------------------- the field tables of docs/channels.md
# Generated from the schemas: `.venv/bin/python tests/publish/test_schemas.py --write` rewrites every
# table that follows a TABLE_INTRO line (in the order of TABLE_KINDS); the test below fails when a
# table differs from what the schemas say (a description or field changed without regenerating).

TABLE_INTRO = "Fields (generated from the schema; `…` rows: same object as named):\n"
TABLE_KINDS = ("fusion_data", "precision9_context", "market_context", "precision9_fusion_status")
_TABLE_RE = re.compile(re.escape(TABLE_INTRO) + r"(\|.*?)(?=\n\n|\n?\Z)", flags=re.S)
_STRUCTURE = "structure.schema.json"
_TIMEFRAME_REF = "envelope.schema.json#/$defs/timeframe"


def _resolve(schemas: dict, ref: str, base: str) -> tuple[dict, str]:
    file, _, pointer = ref.partition("#")
    file = file or base
    node = schemas[file]
    for part in [p for p in pointer.split("/") if p]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, file


def _abs_ref(ref: str, base: str) -> str:
    file, _, pointer = ref.partition("#")
    return f"{file or base}#{pointer}"


def _non_null(node: dict) -> dict | None:
    """X of ``oneOf: [null, X]``."""
    alts = node.get("oneOf", [])
    rest = [a for a in alts if a != {"type": "null"}]
    return rest[0] if len(alts) == 2 and len(rest) == 1 else None


def _deref(schemas: dict, node: dict, base: str) -> tuple[dict, str]:
    """``node`` with its $ref chain merged (its own keys win); stops at the structure schema."""
    while "$ref" in node:
        target, file = _resolve(schemas, node["$ref"], base)
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        if "$ref" not in target:
            node.pop("$ref", None)
        else:
            node["$ref"] = target["$ref"]
        base = file
        if file == _STRUCTURE:
            break
    return node, base


def _type_of(schemas: dict, node: dict, base: str) -> str:
    ref = node.get("$ref")
    if ref and _abs_ref(ref, base) == _TIMEFRAME_REF:
        return "timeframe"
    if ref and _abs_ref(ref, base).startswith(_STRUCTURE) and "enum" not in _resolve(schemas, ref, base)[0]:
        return "structure doc part"
    node, base = _deref(schemas, node, base)
    alt = _non_null(node)
    if alt is not None:
        return _type_of(schemas, alt, base) + " or null"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    t = node.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    if t == "array":
        items = node.get("items")
        return f"array of {_type_of(schemas, items, base)}" if isinstance(items, dict) else "array"
    if t == "object" and "additionalProperties" in node and "properties" not in node:
        key = "tf" if node.get("propertyNames", {}).get("$ref") else "kind"
        return f"{{{key}: {_type_of(schemas, node['additionalProperties'], base)}}}"
    return t or ""


def _meaning(schemas: dict, node: dict, base: str) -> str:
    if node.get("description"):
        return node["description"]
    if "$ref" in node:
        target, file = _resolve(schemas, node["$ref"], base)
        return _meaning(schemas, target, file) or ("see docs/structure.md" if file == _STRUCTURE else "")
    alt = _non_null(node)
    return _meaning(schemas, alt, base) if alt is not None else ""


def _object_of(schemas: dict, node: dict, base: str) -> tuple[dict, str, str | None] | None:
    """The object whose rows a field expands (through $ref and a nullable oneOf), with the $ref
    that named it (its identity for the `…` rows; None for an inline object)."""
    named = None
    while True:
        ref = node.get("$ref")
        if ref and _abs_ref(ref, base).startswith(_STRUCTURE):
            return None
        if "properties" in node:
            return node, base, named
        if ref:
            named = _abs_ref(ref, base)
            node, base = _resolve(schemas, ref, base)
            continue
        node = _non_null(node)
        if node is None:
            return None


def _table_rows(schemas, kind, node, base, prefix, seen, out) -> None:
    props, required = {}, set(node.get("required", []))
    ref = node.get("$ref")
    if ref and not _abs_ref(ref, base).startswith(_STRUCTURE):  # the envelope first
        env, env_base = _resolve(schemas, ref, base)
        props.update({k: (v, env_base) for k, v in env.get("properties", {}).items()})
        required |= set(env.get("required", []))
    props.update({k: (v, base) for k, v in node.get("properties", {}).items()})
    for name, (child, cbase) in props.items():
        path = prefix + name
        meaning = _meaning(schemas, child, cbase).replace("|", "\\|")
        out.append(
            f"| `{path}` | {_type_of(schemas, child, cbase)} | {'yes' if name in required else 'no'} | "
            f"{meaning} |"
        )
        _table_expand(schemas, kind, child, cbase, path, seen, out)


def _table_expand(schemas, kind, child, cbase, path, seen, out) -> None:
    obj = _object_of(schemas, child, cbase)
    if obj is None:
        n, b = _deref(schemas, child, cbase)
        if n.get("type") == "array" and isinstance(n.get("items"), dict):
            _table_expand(schemas, kind, n["items"], b, path + "[]", seen, out)
        elif (
            n.get("type") == "object"
            and "properties" not in n
            and n.get("propertyNames", {}).get("$ref")
            and isinstance(n.get("additionalProperties"), dict)
        ):
            _table_expand(schemas, kind, n["additionalProperties"], b, path + ".{tf}", seen, out)
        return
    node, base, named = obj
    if named is not None and named in seen:
        out.append(f"| `{path}.…` |  |  | as `{kind} {seen[named]}` |")
        return
    if named is not None:
        seen[named] = path
    _table_rows(schemas, kind, node, base, path + ".", seen, out)


def field_table(kind: str) -> str:
    """The markdown field table of one channel schema (as in docs/channels.md)."""
    schemas = _schema_docs()
    out = ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
    _table_rows(schemas, kind, schemas[f"{kind}.schema.json"], f"{kind}.schema.json", "", {}, out)
    return "\n".join(out)


def generated_docs(text: str) -> str:
    """``text`` (docs/channels.md) with every generated table replaced by the schemas' current one."""
    tables = iter(TABLE_KINDS)
    out = _TABLE_RE.sub(lambda m: TABLE_INTRO + field_table(next(tables)), text)
    assert next(tables, None) is None, "docs/channels.md lacks a generated table"
    return out


def test_docs_channels_field_tables_are_the_schemas():
    text = DOCS.read_text(encoding="utf-8")
    assert len(_TABLE_RE.findall(text)) == len(TABLE_KINDS)
    assert generated_docs(text) == text, (
        "docs/channels.md field tables differ from the schemas: .venv/bin/python tests/publish/test_schemas.py --write"
    )
    # the table is not vacuous: a field of every kind of node is there
    table = field_table("fusion_data")
    assert "| `book.depth.0_5pct.…` |  |  | as `fusion_data book.depth.0_1pct` |" in table
    assert "| `candles.{tf}.forming.volume` | number | yes |" in table
    assert '| `events[].kind` | `"support"` \\| `"resistance"` | no |' in table


if __name__ == "__main__":  # regenerate the tables of docs/channels.md
    if sys.argv[1:] != ["--write"]:
        sys.exit(
            "usage: python tests/publish/test_schemas.py --write   (rewrites docs/channels.md's field tables)"
        )
    DOCS.write_text(generated_docs(DOCS.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {DOCS}")
