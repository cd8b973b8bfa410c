"""Packed training data: exact token streams, document-level held-out split, cache and streaming.

Everything runs on a tiny extended tokenizer built in-test with `zhtw-tok build` (a SentencePiece BPE
base trained here on English, extended with zh-TW pieces) and a few KB of zh-TW text written here.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from zhtw.pretrain.data import (
    DataError,
    NoDocumentsError,
    TokenizerLoadError,
    build_packed_data,
    default_cache_dir,
    load_tokenizer,
)

SENTENCES = [
    "臺灣位於東亞，是一個美麗的島嶼",
    "政府公告了新的法規，民眾應該遵守相關規定",
    "我們今天去圖書館看書，然後在公園散步",
    "資訊科技的發展改變了人們的生活方式",
    "這本小說描寫了家族的興衰與人情冷暖",
    "春天來了，山上的花都開了，遊客紛紛前往賞花",
    "老師在教室裡講解數學題目，學生們認真地做筆記",
    "颱風即將登陸，氣象局提醒民眾做好防災準備",
]
BIN = Path(sys.executable).parent


def _documents(n: int, seed: int, min_sentences: int = 1, max_sentences: int = 6) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        picked = rng.sample(SENTENCES, rng.randint(min_sentences, max_sentences))
        docs.append(f"第{i}篇：" + "。".join(picked) + "。")
    return docs


def _write_jsonl_gz(path: Path, texts: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for t in texts:
            fh.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An extended tokenizer: a byte-fallback BPE trained here on English, plus zh-TW pieces."""
    import sentencepiece as spm

    work = tmp_path_factory.mktemp("tok")
    english = "Once upon a time there was a little cat. She liked to play in the garden with a red ball.\n"
    (work / "en.txt").write_text(english * 200, encoding="utf-8")
    base = work / "base"
    base.mkdir()
    spm.SentencePieceTrainer.train(
        input=str(work / "en.txt"),
        model_prefix=str(base / "tokenizer"),
        vocab_size=320,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        minloglevel=2,
    )
    _write_jsonl_gz(work / "zh.jsonl.gz", _documents(150, seed=7))
    out = work / "extended"
    subprocess.run(
        [BIN / "zhtw-tok", "build", "--base", base / "tokenizer.model", "--corpus", work / "zh.jsonl.gz"]
        + ["--output", out, "--vocab-size", "512", "--heldout-mb", "0.001", "--no-verify", "--quiet"],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[list[str], list[str]]:
    """Two files (JSONL.gz and Parquet) in one directory; returns ([dir], documents in read order)."""
    docs = _documents(60, seed=1)
    data = tmp_path / "corpus"
    data.mkdir()
    _write_jsonl_gz(data / "a.jsonl.gz", docs[:35])
    pq.write_table(pa.table({"text": docs[35:]}), data / "b.parquet")
    return [str(data)], docs


def _encode(tok_dir: Path, docs: list[str]) -> list[list[int]]:
    """Reference: each document as [BOS] ids [EOS], tokenised independently of the module."""
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    return [[tok.bos_token_id, *tok.encode(d, add_special_tokens=False), tok.eos_token_id] for d in docs]


def _rows(ds) -> list[list[int]]:
    return [list(r["input_ids"]) for r in ds]


def _segments(stream: list[int], eos: int) -> list[list[int]]:
    """Split a packed token stream after each EOS (the last, unterminated piece is dropped)."""
    out, cur = [], []
    for t in stream:
        cur.append(t)
        if t == eos:
            out.append(cur)
            cur = []
    return out


def test_documents_are_split_whole_and_packed_in_order(tok_dir: Path, corpus, tmp_path: Path) -> None:
    paths, docs = corpus
    # block_size 2 keeps (almost) every token, so the streams can be compared document by document
    packed = build_packed_data(paths, str(tok_dir), 2, cache_dir=str(tmp_path / "c"), eval_fraction=0.1)
    expected = _encode(tok_dir, docs)
    eos = expected[0][-1]
    train = _segments(list(itertools.chain.from_iterable(_rows(packed.train))), eos)
    held = _segments(list(itertools.chain.from_iterable(_rows(packed.eval))), eos)

    assert len(held) == 6 and packed.stats["documents_eval"] == 6  # round(60 * 0.1)
    assert len(train) + len(held) == 60
    assert train + held != expected  # the held-out ones are spread, not the tail
    eval_ids = [expected.index(d) for d in held]
    assert eval_ids == sorted(eval_ids)  # both splits keep corpus order
    assert train == [d for i, d in enumerate(expected) if i not in eval_ids]
    assert all(d[0] == expected[0][0] for d in train + held)  # BOS opens every document
    assert packed.stats["tokens_train"] == sum(map(len, train))
    assert packed.stats["documents"] == 60 and packed.stats["files"] == 2


def test_blocks_are_full_and_the_tail_is_counted(tok_dir: Path, corpus, tmp_path: Path) -> None:
    paths, docs = corpus
    cache = str(tmp_path / "c")
    fine = build_packed_data(paths, str(tok_dir), 2, cache_dir=cache, eval_fraction=0.1)
    packed = build_packed_data(paths, str(tok_dir), 64, cache_dir=cache, eval_fraction=0.1)
    rows = _rows(packed.train)
    assert rows and all(len(r) == 64 for r in rows)
    stream = list(itertools.chain.from_iterable(_rows(fine.train)))
    st = packed.stats
    assert st["tokens_train"] == fine.stats["tokens_train"]
    assert len(rows) == st["blocks_train"] == st["tokens_train"] // 64
    assert st["dropped_tail_tokens_train"] == st["tokens_train"] - 64 * len(rows) < 64
    assert list(itertools.chain.from_iterable(rows)) == stream[: 64 * len(rows)]
    assert all(len(r) == 64 for r in _rows(packed.eval))
    assert st["blocks_eval"] == st["tokens_eval"] // 64


def test_no_bos_and_seeded_split(tok_dir: Path, corpus, tmp_path: Path) -> None:
    paths, docs = corpus
    cache = str(tmp_path / "c")
    expected = _encode(tok_dir, docs)
    bos, eos = expected[0][0], expected[0][-1]

    def eval_docs(seed: int) -> list[list[int]]:
        p = build_packed_data(
            paths, str(tok_dir), 2, cache_dir=cache, eval_fraction=0.2, seed=seed, add_bos=False
        )
        stream = list(itertools.chain.from_iterable(_rows(p.eval)))
        assert bos not in stream
        return _segments(stream, eos)

    first, again, other = eval_docs(1), eval_docs(1), eval_docs(2)
    assert first == again
    assert first != other
    assert all([bos, *d] in expected for d in first + other)


def test_eval_size_rules(tok_dir: Path, tmp_path: Path) -> None:
    docs = _documents(5, seed=3, min_sentences=6)
    _write_jsonl_gz(tmp_path / "d.jsonl.gz", docs)
    cache = str(tmp_path / "c")
    files = [str(tmp_path / "d.jsonl.gz")]
    # 1% of 5 documents still holds one out; eval_max_docs caps; 0 turns evaluation off
    assert build_packed_data(files, str(tok_dir), 8, cache_dir=cache).stats["documents_eval"] == 1
    capped = build_packed_data(files, str(tok_dir), 8, cache_dir=cache, eval_fraction=0.9, eval_max_docs=2)
    assert capped.stats["documents_eval"] == 2
    off = build_packed_data(files, str(tok_dir), 8, cache_dir=cache, eval_fraction=0.0)
    assert off.eval is None and off.stats["documents_train"] == 5
    # held-out text shorter than one block: no eval split rather than a padded one
    short = tmp_path / "short.jsonl.gz"
    _write_jsonl_gz(short, [f"第{i}篇短文。" for i in range(10)])
    tiny = build_packed_data([str(short)], str(tok_dir), 16, cache_dir=cache, eval_fraction=0.1)
    assert tiny.stats["documents_eval"] == 1 and 0 < tiny.stats["tokens_eval"] < 16
    assert tiny.eval is None and tiny.stats["blocks_eval"] == 0
    assert tiny.stats["dropped_tail_tokens_eval"] == tiny.stats["tokens_eval"]


def test_cache_is_reused_without_reading_the_data(tok_dir: Path, corpus, tmp_path: Path) -> None:
    paths, docs = corpus
    cache = tmp_path / "c"
    first = build_packed_data(paths, str(tok_dir), 16, cache_dir=str(cache))
    assert first.stats["cache_hit"] is False
    assert first.cache_dir is not None and first.cache_dir.parent == cache
    meta = json.loads((first.cache_dir / "meta.json").read_text())
    assert meta["key"] == first.stats["cache_key"] == first.cache_dir.name
    assert [f["path"] for f in meta["key_contents"]["files"]] == sorted(
        str(Path(paths[0], n).resolve()) for n in ("a.jsonl.gz", "b.parquet")
    )

    # Overwrite a file with zeros of the same size and put its mtime back: the key is unchanged, so the
    # rerun must serve the old blocks without reading the file (reading it would find no documents).
    src = Path(paths[0]) / "a.jsonl.gz"
    st = src.stat()
    src.write_bytes(b"\0" * st.st_size)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))

    again = build_packed_data(paths, str(tok_dir), 16, cache_dir=str(cache))
    assert again.stats["cache_hit"] is True
    assert again.stats["cache_key"] == first.stats["cache_key"]
    assert _rows(again.train) == _rows(first.train) and _rows(again.eval) == _rows(first.eval)
    assert {k: v for k, v in again.stats.items() if k not in ("cache_hit", "seconds")} == {
        k: v for k, v in first.stats.items() if k not in ("cache_hit", "seconds")
    }

    # a real edit (new mtime) is a new key and a fresh build
    _write_jsonl_gz(src, [d[::-1] for d in docs[:35]])
    changed = build_packed_data(paths, str(tok_dir), 16, cache_dir=str(cache))
    assert changed.stats["cache_hit"] is False
    assert changed.stats["cache_key"] != first.stats["cache_key"]
    assert _rows(changed.train) != _rows(first.train)


def test_cache_key_covers_settings_and_tokenizer(tok_dir: Path, corpus, tmp_path: Path) -> None:
    paths, _ = corpus
    cache = str(tmp_path / "c")
    keys = {
        build_packed_data(paths, str(tok_dir), 16, cache_dir=cache, **kw).stats["cache_key"]
        for kw in ({}, {"seed": 1}, {"add_bos": False}, {"eval_fraction": 0.2}, {"eval_max_docs": 3})
    }
    keys.add(build_packed_data(paths, str(tok_dir), 32, cache_dir=cache).stats["cache_key"])
    other_tok = tmp_path / "tok2"
    shutil.copytree(tok_dir, other_tok)
    config = json.loads((other_tok / "tokenizer_config.json").read_text())
    config["add_bos_token"] = not config.get("add_bos_token", True)
    (other_tok / "tokenizer_config.json").write_text(json.dumps(config))
    keys.add(build_packed_data(paths, str(other_tok), 16, cache_dir=cache).stats["cache_key"])
    assert len(keys) == 7
    assert sorted(p.name for p in Path(cache).iterdir()) == sorted(keys)


def test_default_cache_dir_follows_zhtw_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZHTW_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "packed"
    monkeypatch.delenv("ZHTW_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "zhtw" / "packed"


def test_killed_build_leaves_no_cache_entry(tok_dir: Path, tmp_path: Path) -> None:
    """SIGKILL a build while it writes: no entry appears, and the next build cleans up and succeeds."""
    data = tmp_path / "big.jsonl.gz"
    _write_jsonl_gz(data, _documents(6000, seed=5, min_sentences=4, max_sentences=8))  # ~1.5 MB of text
    cache = tmp_path / "c"
    script = (
        "from zhtw.pretrain.data import build_packed_data\n"
        f"build_packed_data([{str(data)!r}], {str(tok_dir)!r}, 32, cache_dir={str(cache)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        while proc.poll() is None and not list(cache.glob(".tmp-*")):
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    if proc.returncode == 0:
        pytest.fail("the build finished before it could be killed; give it more data")
    temps = list(cache.glob(".tmp-*"))
    assert len(temps) == 1 and f"-{socket.gethostname()}-{proc.pid}-" in temps[0].name
    assert [p for p in cache.iterdir() if not p.name.startswith(".")] == []

    # an entry without its metadata (what a non-atomic writer could leave) is not trusted either
    key = temps[0].name.split("-")[1]
    (cache / key).mkdir()
    (cache / key / "train.arrow").write_bytes(b"partial")
    packed = build_packed_data([str(data)], str(tok_dir), 32, cache_dir=str(cache))
    assert packed.stats["cache_hit"] is False and packed.stats["cache_key"] == key
    assert packed.stats["documents"] == 6000
    assert list(cache.glob(".tmp-*")) == []
    assert build_packed_data([str(data)], str(tok_dir), 32, cache_dir=str(cache)).stats["cache_hit"] is True


def test_streaming_yields_the_cached_blocks(tok_dir: Path, tmp_path: Path) -> None:
    docs = _documents(400, seed=9, min_sentences=3)
    data = tmp_path / "data"
    data.mkdir()
    _write_jsonl_gz(data / "a.jsonl.gz", docs[:250])
    _write_jsonl_gz(data / "b.jsonl.gz", docs[250:])
    cached = build_packed_data(
        [str(data)], str(tok_dir), 48, cache_dir=str(tmp_path / "c"), eval_fraction=0.05
    )
    streamed = build_packed_data([str(data)], str(tok_dir), 48, streaming=True, eval_fraction=0.05)
    assert streamed.cache_dir is None and streamed.stats["streaming"] is True
    n = cached.stats["blocks_train"]
    assert n > 100
    first = [r["input_ids"] for r in itertools.islice(streamed.train, 100)]
    assert first == _rows(cached.train.select(range(100)))
    assert [r["input_ids"] for r in streamed.train] == _rows(cached.train)  # a full second pass
    assert _rows(streamed.eval) == _rows(cached.eval)
    assert streamed.stats["documents_eval"] == cached.stats["documents_eval"] == 20


def test_worker_processes_give_the_same_blocks(tok_dir: Path, corpus, tmp_path: Path) -> None:
    paths, _ = corpus
    one = build_packed_data(paths, str(tok_dir), 16, cache_dir=str(tmp_path / "a"))
    two = build_packed_data(paths, str(tok_dir), 16, cache_dir=str(tmp_path / "b"), num_proc=2)
    assert _rows(two.train) == _rows(one.train) and _rows(two.eval) == _rows(one.eval)


def test_errors_say_what_to_do(tok_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "  "}) + "\n" + json.dumps({"body": "臺灣"}) + "\n")
    with pytest.raises(NoDocumentsError, match="empty.jsonl"):
        build_packed_data([str(empty)], str(tok_dir), 16, cache_dir=str(tmp_path / "c"))
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": "臺灣位於東亞"}, ensure_ascii=False) + "\n")
    with pytest.raises(DataError, match="no such file"):
        build_packed_data([str(tmp_path / "missing.jsonl")], str(tok_dir), 16)
    with pytest.raises(DataError, match="block_size must be at least 2"):
        build_packed_data([str(good)], str(tok_dir), 1)
    with pytest.raises(TokenizerLoadError, match="does not exist.*zhtw-tok build"):
        build_packed_data([str(good)], str(tmp_path / "no_tok"), 16)
    (tmp_path / "not_tok").mkdir()
    with pytest.raises(TokenizerLoadError, match="neither tokenizer.json nor tokenizer.model"):
        load_tokenizer(tmp_path / "not_tok")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerLoadError, match="cannot load"):
        load_tokenizer(broken)
    with pytest.raises(DataError, match="fewer than one block"):
        build_packed_data([str(good)], str(tok_dir), 4096, cache_dir=str(tmp_path / "c"))


@pytest.mark.shared_data
def test_sentencepiece_only_dir_matches_sentencepiece(shared_data: Path, tmp_path: Path) -> None:
    """A base model dir with only tokenizer.model (stories260K) tokenises as sentencepiece does."""
    import sentencepiece as spm

    model_dir = shared_data / "models" / "stories260K"
    docs = ["Once upon a time, there was a little dog.", "He liked to run. Then he slept in the sun."]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    packed = build_packed_data(
        [str(tmp_path / "d.jsonl")], str(model_dir), 2, cache_dir=str(tmp_path / "c"), eval_fraction=0
    )
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    expected = [t for ids in sp.encode(docs) for t in [sp.bos_id(), *ids, sp.eos_id()]]
    stream = list(itertools.chain.from_iterable(_rows(packed.train)))
    assert stream == expected[: len(stream)] and len(expected) - len(stream) < 2


# --------------------------------------------------------------------------- weighted mixtures

ENGLISH = [
    "Return the sum of the values in the list, or zero when it is empty.",
    "Open the file for reading and yield its lines without the trailing newline.",
    "Raise ValueError when the argument is negative; otherwise return its square root.",
]


def _mixture_sources(tmp_path: Path) -> tuple[str, str]:
    zh = tmp_path / "zh"
    zh.mkdir()
    _write_jsonl_gz(zh / "a.jsonl.gz", _documents(120, seed=3))
    en = tmp_path / "en.jsonl.gz"
    _write_jsonl_gz(en, [ENGLISH[i % 3] + f" Case {i}." for i in range(4)])
    return str(zh), str(en)


def test_mixture_schedule_counts_and_spread() -> None:
    from zhtw.pretrain.data import mixture_schedule

    order = mixture_schedule([90, 5], [0.9, 0.1])
    assert len(order) == 100 and list(order).count(1) == 10  # the small source repeats twice
    assert all(1 <= list(order[i : i + 10]).count(1) <= 2 for i in range(0, 100, 10))  # evenly spread
    assert list(mixture_schedule([3, 30], [1, 1])).count(0) == 30  # equal weights: the small one cycles 10x


def test_weighted_data_files_mix_deterministically(tok_dir: Path, tmp_path: Path) -> None:
    zh, en = _mixture_sources(tmp_path)
    kw = {"eval_fraction": 0.0, "cache_dir": str(tmp_path / "c")}
    alone = {
        src: [tuple(r) for r in _rows(build_packed_data([src], str(tok_dir), 16, **kw).train)]
        for src in (zh, en)
    }
    mixed = build_packed_data([zh, en], str(tok_dir), 16, weights=[0.9, 0.1], **kw)
    rows = [tuple(r) for r in _rows(mixed.train)]
    source = [0 if r in set(alone[zh]) else 1 for r in rows]
    assert all(r in set(alone[zh]) or r in set(alone[en]) for r in rows)
    # zh-TW is the most demanding source: each of its blocks once, in order; English cycles to 10% of the blocks
    assert [r for r, s in zip(rows, source) if s == 0] == alone[zh]
    n_en = source.count(1)
    assert abs(n_en / len(rows) - 0.1) < 1.5 / len(rows) and n_en > len(alone[en])
    assert [r for r, s in zip(rows, source) if s == 1] == [alone[en][i % len(alone[en])] for i in range(n_en)]
    mix = mixed.stats["mixture"]
    assert [m["weight"] for m in mix] == [0.9, 0.1] and mix[0]["epochs"] == 1.0 and mix[1]["epochs"] > 1
    assert mixed.stats["blocks_train"] == len(rows)

    # the same inputs in a fresh cache give the same blocks in the same order (what resuming relies on)
    again = build_packed_data([zh, en], str(tok_dir), 16, weights=[0.9, 0.1], eval_fraction=0.0,
                              cache_dir=str(tmp_path / "fresh"))  # fmt: skip
    assert [tuple(r) for r in _rows(again.train)] == rows and not again.stats["cache_hit"]
    assert build_packed_data([zh, en], str(tok_dir), 16, weights=[0.9, 0.1], **kw).stats["cache_hit"]
    other = build_packed_data([zh, en], str(tok_dir), 16, weights=[0.5, 0.5], **kw)
    assert other.cache_dir != mixed.cache_dir and other.stats["mixture"][1]["share"] == pytest.approx(
        0.5, abs=0.01
    )
    unweighted = build_packed_data([zh, en], str(tok_dir), 16, **kw)
    assert (
        unweighted.cache_dir not in (mixed.cache_dir, other.cache_dir) and "mixture" not in unweighted.stats
    )


def test_weighted_data_files_refusals(tok_dir: Path, tmp_path: Path) -> None:
    zh, en = _mixture_sources(tmp_path)
    kw = {"cache_dir": str(tmp_path / "c")}
    with pytest.raises(DataError, match="one weight per data_files entry"):
        build_packed_data([zh, en], str(tok_dir), 16, weights=[1.0], **kw)
    with pytest.raises(DataError, match="positive numbers"):
        build_packed_data([zh, en], str(tok_dir), 16, weights=[1.0, -0.1], **kw)
    with pytest.raises(DataError, match="streaming: false"):
        build_packed_data([zh, en], str(tok_dir), 16, weights=[0.9, 0.1], streaming=True, **kw)
    tiny = tmp_path / "tiny.jsonl.gz"
    _write_jsonl_gz(tiny, ["Hi."])
    with pytest.raises(DataError, match=r"tiny.jsonl.gz \(weight 0.1\) gives .* fewer than one block"):
        build_packed_data([zh, str(tiny)], str(tok_dir), 64, weights=[0.9, 0.1], eval_fraction=0.0, **kw)
