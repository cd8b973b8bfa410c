"""Byte-level BPE extension (Llama-3 / Qwen2 style): rule, training, files, reference, GGUF fields, invariants.

Unit tests use a tiny byte-level BPE trained in the test with the tokenizers library (Llama-3's pre-tokenizer);
realistic tests use the real Llama-3 and Qwen2 tokenizer.json files and the corpus under ../shared/data.
"""

from __future__ import annotations

import base64
import json
import os
from itertools import islice
from pathlib import Path

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from zhtw.corpus.textio import iter_texts
from zhtw.tokenizer.bytelevel import (
    PRE_TOKENIZER_REGEX,
    decompose,
    extend,
    load_base,
    reference_encoder,
    safe_new_token,
    token_bytes,
    write_hf,
)
from zhtw.tokenizer.bytelevel_gguf import gguf_vocab
from zhtw.tokenizer.bytelevel_train import balanced_texts, learn_merges
from zhtw.tokenizer.bytelevel_verify import INVARIANTS, verify
from zhtw.tokenizer.errors import CorpusTooSmallError, UnsupportedBaseError, VerificationError

ZH = [
    "臺灣的中文維基百科是一個自由的百科全書，任何人都可以編輯。",
    "行政院公報刊登法規命令，中華民國的法律由立法院通過。",
    "「你好」，他說：我們今天去臺北市的圖書館讀書。",
    "賈寶玉笑道：林妹妹今日身上可好些了？",
    "使用者可以在設定中變更語言，然後重新啟動應用程式。",
]
ENGLISH = [
    "def f(x):\n    return x  # comment\n\n\nclass A:\n        pass\n",
    "The quick brown fox jumps over the lazy dog. Hello, world!",
    "  leading spaces and\ttabs\n\n\nnumbers 12345 67.89 e=mc^2",
]
VERIFY_ENGLISH = [*ENGLISH, "Zebras quizzically vexed jumpy wolves; xylophones hummed."]
CONFIG = {
    "backend": "tokenizers",
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|end_of_text|>",
    "tokenizer_class": "TokenizersBackend",
}
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]


def stdlib_texts(n: int) -> list[str]:
    files = sorted(Path(os.__file__).parent.glob("*.py"))[:n]
    return [p.read_text(encoding="utf-8")[:4000] for p in files]


def _byte_level_pre(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def train_tiny(path: Path, *, pre: pre_tokenizers.PreTokenizer | None = None, vocab_size: int = 1000) -> Path:
    """A real byte-level BPE (Llama-3 layout, ignore_merges) trained on a little English and Chinese."""
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre or _byte_level_pre(PRE_TOKENIZER_REGEX["llama-bpe"])
    tok.decoder = decoders.ByteLevel()
    chars = "\n".join(sorted(set("".join(ZH) + "中文字"))) + "\n"
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(ENGLISH * 5 + [chars] * 3, trainer)
    tok.add_special_tokens(SPECIALS)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(CONFIG))
    return path


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return train_tiny(tmp_path / "base")


def build(base_dir: Path, out: Path, n_new: int = 30) -> tuple[object, object]:
    base = load_base(base_dir)
    merges = learn_merges(base, ZH * 3, n_new)
    ext = extend(base, merges)
    write_hf(out, ext, base_dir)
    return base, ext


# ---------------------------------------------------------------- the allowed-character rule


@pytest.mark.parametrize(
    ("text", "raw", "ok"),
    [
        ("中文", None, True),
        ("，但", None, True),  # full-width comma + ideograph
        ("「你", None, True),
        ("ㄅㄆ", None, True),  # Bopomofo
        ("a中", None, False),
        ("中 ", None, False),
        ("ひら", None, False),  # kana
        ("한국", None, False),  # hangul
        ("中", "中".encode()[:2], True),  # start of a character whose every completion is an ideograph
        ("中", "中".encode()[1:], False),  # starts inside a character: could be the tail of anything
        ("", b"\xe3", False),  # e3 begins both CJK punctuation and kana
        ("", b"\xe4", False),  # e4 begins U+4000-4FFF, which holds the Yijing hexagram symbols
    ],
)
def test_safe_new_token_rule(text: str, raw: bytes | None, ok: bool) -> None:
    assert safe_new_token(raw if raw is not None else text.encode()) is ok


# ---------------------------------------------------------------- learning and extending (tiny base)


def test_learned_merges_join_only_allowed_characters(tiny: Path) -> None:
    base = load_base(tiny)
    mixed = [t + " abcabc 中文abc ひらがなひらがな 한국어한국어 " for t in ZH] * 4
    merges = learn_merges(base, mixed, 40)
    assert len(merges) == 40
    for a, b in merges:
        assert safe_new_token(token_bytes(a + b)), (a, b)
        assert a + b not in base.vocab


def test_extend_ids_follow_merge_order_after_specials(tiny: Path, tmp_path: Path) -> None:
    base, ext = build(tiny, tmp_path / "out")
    vocab = ext.data["model"]["vocab"]
    assert base.next_id == max(t["id"] for t in base.added_tokens) + 1  # after the special tokens
    assert ext.first_new_id == base.next_id and ext.added == 30 and ext.size == base.next_id + 30
    assert ext.embedding_rows % 64 == 0 and ext.embedding_rows >= ext.size
    new = sorted((i, t) for t, i in vocab.items() if t not in base.vocab and t not in SPECIALS)
    assert [i for i, _ in new] == list(range(base.next_id, base.next_id + 30))
    assert ext.data["added_tokens"] == base.data["added_tokens"]
    assert ext.data["model"]["ignore_merges"] is True
    assert ext.data["model"]["merges"][: len(base.merges)] == base.data["model"]["merges"]


def test_written_files_load_and_keep_english(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    base, ext = build(tiny, tmp_path / "out")
    (tiny / "chat_template.jinja").write_text("{{ messages }}")
    write_hf(tmp_path / "out", ext, tiny)
    fast = AutoTokenizer.from_pretrained(tmp_path / "out")
    core = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert len(fast) == ext.size
    for t in base.added_tokens:  # tokenizers renumbers added tokens the model vocabulary does not hold
        assert core.token_to_id(t["content"]) == t["id"]
        assert fast.convert_tokens_to_ids(t["content"]) == t["id"]
        assert core.encode(t["content"] + "中文", add_special_tokens=False).ids[0] == t["id"]
    assert (tmp_path / "out" / "chat_template.jinja").read_text() == "{{ messages }}"
    for text in ENGLISH:
        want = base.tokenizer.encode(text, add_special_tokens=False).ids
        assert core.encode(text, add_special_tokens=False).ids == want
        assert fast(text, add_special_tokens=False)["input_ids"] == want
    zh = "".join(ZH)
    assert len(core.encode(zh).ids) < len(base.tokenizer.encode(zh).ids)


def test_reference_and_decompose(tiny: Path, tmp_path: Path) -> None:
    base, ext = build(tiny, tmp_path / "out")
    core = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    ref = reference_encoder(tmp_path / "out")
    for text in ZH + ENGLISH + ["<|begin_of_text|>中文"]:
        assert ref.encode(text) == core.encode(text, add_special_tokens=False).ids
    for token, i in ext.data["model"]["vocab"].items():
        if i >= ext.first_new_id:
            parts = decompose(base, token)
            assert len(parts) > 1 and all(p < base.next_id for p in parts)
            assert b"".join(token_bytes(base.tokenizer.id_to_token(p)) for p in parts) == token_bytes(token)


def test_repeated_pair_skipped_when_token_exists(tiny: Path) -> None:
    """A frequent pair whose concatenation already exists is never added again (no second id)."""
    base = load_base(tiny)
    merges = learn_merges(base, ["中文中文中文中文"] * 50 + ZH, 20, allow_fewer=True)
    tokens = [a + b for a, b in merges]
    assert len(set(tokens)) == len(tokens)
    assert not set(tokens) & set(base.vocab)


def test_corpus_too_small(tiny: Path) -> None:
    base = load_base(tiny)
    with pytest.raises(CorpusTooSmallError, match="too few"):
        learn_merges(base, ["中文"], 100)
    with pytest.raises(CorpusTooSmallError, match="at most"):
        learn_merges(base, ZH * 20, 1000)
    assert 0 < len(learn_merges(base, ZH * 20, 1000, allow_fewer=True)) < 1000


def test_balanced_texts_equal_share(tmp_path: Path) -> None:
    import gzip

    big, small = tmp_path / "big.jsonl.gz", tmp_path / "small.jsonl.gz"
    with gzip.open(big, "wt") as f:
        f.writelines(json.dumps({"text": f"公司{i:04d}" * 50}) + "\n" for i in range(200))
    with gzip.open(small, "wt") as f:
        f.writelines(json.dumps({"text": "紅樓夢" * 10}) + "\n" for _ in range(10))
    texts = balanced_texts([big, small], 2000)
    from_small = sum(len(t) for t in texts if t.startswith("紅"))
    from_big = sum(len(t) for t in texts if t.startswith("公"))
    assert from_small == 300  # all of it: less than its share
    assert 1700 <= from_big <= 1700 + 400
    firsts = [t for t in texts if t.startswith("公")]
    assert firsts[-1] != "公司0004" * 50  # spread through the file, not its first documents


# ---------------------------------------------------------------- GGUF fields


def test_gguf_vocab(tiny: Path, tmp_path: Path) -> None:
    base, ext = build(tiny, tmp_path / "out")
    g = gguf_vocab(tmp_path / "out", vocab_size=ext.embedding_rows)
    assert g.model == "gpt2" and g.pre == "llama-bpe"
    assert len(g.tokens) == ext.embedding_rows
    vocab = ext.data["model"]["vocab"]
    assert all(g.tokens[i] == t and g.token_types[i] == 1 for t, i in vocab.items() if t not in SPECIALS)
    bos = base.tokenizer.token_to_id("<|begin_of_text|>")
    assert g.tokens[bos] == "<|begin_of_text|>" and g.token_types[bos] == 3
    assert g.bos_id == bos and g.eos_id == bos + 1 and g.pad_id is None
    assert g.tokens[ext.size] == f"[PAD{ext.size}]" and g.token_types[ext.size] == 5
    assert g.merges[-1] == " ".join(ext.data["model"]["merges"][-1])
    assert len(g.merges) == len(ext.data["model"]["merges"])


def test_gguf_vocab_refuses_unknown_pre_tokenizer(tiny: Path) -> None:
    data = json.loads((tiny / "tokenizer.json").read_text())
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\w+|\s+"
    with pytest.raises(UnsupportedBaseError, match="unknown pre-tokenizer"):
        gguf_vocab(data)


# ---------------------------------------------------------------- bad bases


def _save(tok: Tokenizer, tmp_path: Path) -> Path:
    d = tmp_path / "bad"
    d.mkdir(exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    return d


def test_refuses_wordpiece(tmp_path: Path) -> None:
    tok = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    with pytest.raises(UnsupportedBaseError, match=r"bad/tokenizer.json: the model is WordPiece, not BPE"):
        load_base(_save(tok, tmp_path))


def test_refuses_unigram(tmp_path: Path) -> None:
    tok = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk_id=0))
    with pytest.raises(UnsupportedBaseError, match="the model is Unigram, not BPE"):
        load_base(_save(tok, tmp_path))


def test_refuses_bpe_that_is_not_byte_level(tmp_path: Path) -> None:
    tok = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    tok.pre_tokenizer = _byte_level_pre(PRE_TOKENIZER_REGEX["llama-bpe"])
    tok.decoder = decoders.ByteLevel()
    with pytest.raises(UnsupportedBaseError, match="not a byte-level BPE"):
        load_base(_save(tok, tmp_path))


def test_refuses_unknown_pre_tokenizer(tmp_path: Path) -> None:
    gpt2_style = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    with pytest.raises(UnsupportedBaseError, match="unknown pre-tokenizer.*supported: Llama-3"):
        load_base(train_tiny(tmp_path / "gpt2", pre=gpt2_style))


def test_refuses_unknown_normaliser(tiny: Path) -> None:
    tok = Tokenizer.from_file(str(tiny / "tokenizer.json"))
    tok.normalizer = normalizers.Lowercase()
    tok.save(str(tiny / "tokenizer.json"))
    with pytest.raises(UnsupportedBaseError, match="normaliser"):
        load_base(tiny)


def test_refuses_added_token_colliding_with_vocab(tiny: Path) -> None:
    data = json.loads((tiny / "tokenizer.json").read_text())
    token = next(t for t in data["model"]["vocab"] if len(t) > 2)
    data["added_tokens"].append({**data["added_tokens"][0], "id": 999, "content": token})
    (tiny / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(UnsupportedBaseError, match="collides with vocabulary token"):
        load_base(tiny)


def test_refuses_new_token_colliding_with_added_token(tiny: Path) -> None:
    base = load_base(tiny)
    merges = learn_merges(base, ZH * 3, 10)
    token = merges[0][0] + merges[0][1]
    data = json.loads((tiny / "tokenizer.json").read_text())
    data["added_tokens"].append({**data["added_tokens"][0], "id": base.next_id, "content": token})
    (tiny / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(UnsupportedBaseError, match="collides with an added token"):
        extend(load_base(tiny), merges)
    assert token not in {a + b for a, b in learn_merges(load_base(tiny), ZH * 3, 10)}


def test_refuses_disagreeing_tokenizer_model(tiny: Path) -> None:
    base = load_base(tiny)
    lines = [f"{base64.b64encode(token_bytes(t)).decode()} {i}" for t, i in base.vocab.items()]
    (tiny / "tokenizer.model").write_text("\n".join(lines) + "\n")
    load_base(tiny)  # tiktoken ranks equal to the vocabulary: accepted
    (tiny / "tokenizer.model").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(UnsupportedBaseError, match="describe different tokenizers"):
        load_base(tiny)


# ---------------------------------------------------------------- verify: each invariant broken on its own


def _rewrite(out: Path, edit) -> None:
    path = out / "tokenizer.json"
    data = json.loads(path.read_text())
    text = edit(data)
    path.write_text(text if isinstance(text, str) else json.dumps(data))


def _new_tokens(data: dict, first: int) -> list[str]:
    return [t for t, i in sorted(data["model"]["vocab"].items(), key=lambda p: p[1]) if i >= first]


def _break(invariant: str, base, first: int):
    """An edit of the extended tokenizer.json that breaks exactly `invariant`."""

    def duplicates(d: dict):
        last = _new_tokens(d, first)[-1]
        text = json.dumps(d)
        return text.replace('"vocab": {', '"vocab": {' + json.dumps(last) + f": {first + 10_000}, ", 1)

    def base_ids(d: dict):
        v = d["model"]["vocab"]
        a, b = "a", "b"
        v[a], v[b] = v[b], v[a]

    def specials(d: dict):
        d["added_tokens"][1]["content"] = "<|eot|>"

    def contiguous(d: dict):
        v = d["model"]["vocab"]
        v[_new_tokens(d, first)[-1]] += 1

    def reachable(d: dict):
        last = _new_tokens(d, first)[-1]
        d["model"]["merges"] = [m for m in d["model"]["merges"] if m[0] + m[1] != last]

    def round_trip(d: dict):
        d["decoder"] = {"type": "Fuse"}

    def english(d: dict):
        pieces = [p for t in VERIFY_ENGLISH for p, _ in base.tokenizer.pre_tokenizer.pre_tokenize_str(t)]
        split = next(ts for ts in map(base.tokenizer.model.tokenize, pieces) if len(ts) > 1)
        a, b = split[0].value, split[1].value
        d["model"]["vocab"][a + b] = first + len(_new_tokens(d, first))
        d["model"]["merges"].append([a, b])

    def reference(d: dict):
        merges = d["model"]["merges"]
        i, j = merges.index(["ä¸Ń", "æĸĩ"]), merges.index(["æĸĩ", "åŃĹ"])
        merges[i], merges[j] = merges[j], merges[i]

    def base_config(d: dict):
        d["model"]["fuse_unk"] = True  # no effect on a byte-level BPE, but not the base's setting

    def allowed(d: dict):
        a, b = token_bytes_str(0xE3), token_bytes_str(0x81)
        d["model"]["vocab"][a + b] = first + len(_new_tokens(d, first))
        d["model"]["merges"].append([a, b])

    return {
        "duplicates": duplicates,
        "base-ids": base_ids,
        "specials": specials,
        "contiguous": contiguous,
        "reachable": reachable,
        "round-trip": round_trip,
        "english": english,
        "reference": reference,
        "base-config": base_config,
        "allowed": allowed,
    }[invariant]


def token_bytes_str(byte: int) -> str:
    from zhtw.tokenizer.bytelevel import BYTE_TO_UNICODE

    return BYTE_TO_UNICODE[byte]


@pytest.fixture()
def built(tiny: Path, tmp_path: Path):
    base = load_base(tiny)
    learned = learn_merges(base, [t.replace("中文", "") for t in ZH] * 3, 20)
    competing = [("ä¸Ń", "æĸĩ"), ("æĸĩ", "åŃĹ")]  # 中文 then 文字: they compete on 中文字
    assert all(a in base.vocab and b in base.vocab and a + b not in base.vocab for a, b in competing)
    assert not {a + b for a, b in competing} & {a + b for a, b in learned}
    ext = extend(base, learned + competing)
    out = tmp_path / "out"
    write_hf(out, ext, tiny)
    return base, ext, out


def test_verify_passes_on_a_good_build(built) -> None:
    base, ext, out = built
    report = verify(out, base, ZH + ["中文字"], VERIFY_ENGLISH)
    assert report.new_tokens == ext.added and report.checks == INVARIANTS


@pytest.mark.parametrize("invariant", INVARIANTS)
def test_verify_catches_each_broken_invariant(built, invariant: str) -> None:
    base, ext, out = built
    _rewrite(out, _break(invariant, base, ext.first_new_id))
    with pytest.raises(VerificationError) as info:
        verify(out, base, ZH + ["中文字"], VERIFY_ENGLISH)
    assert info.value.invariant == invariant


# ---------------------------------------------------------------- the real Llama-3 and Qwen2 bases


def _vectors(directory: Path) -> list[tuple[str, list[int]]]:
    texts = (directory / "llamacpp_vectors.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = (directory / "llamacpp_vectors.out").read_text(encoding="utf-8").split("\n")
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, ids)]


@pytest.fixture(scope="module", params=["llama3", "qwen2"])
def real(request, shared_data: Path, tmp_path_factory):
    name = request.param
    base_dir = shared_data / "tokenizers" / name
    base = load_base(base_dir)
    train = sorted((shared_data / "corpus" / "train").glob("*.jsonl.gz"))
    texts = [t[:3000] for f in train for t in islice(iter_texts(f), 40)]
    merges = learn_merges(base, texts, 300)
    ext = extend(base, merges)
    out = tmp_path_factory.mktemp(name)
    write_hf(out, ext, base_dir)
    return name, base_dir, base, ext, out


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_base_detected(real) -> None:
    name, _, base, ext, _ = real
    assert base.pre == {"llama3": "llama-bpe", "qwen2": "qwen2"}[name]
    assert ext.first_new_id == {"llama3": 128256, "qwen2": 151936}[name]


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_llamacpp_vectors_without_cjk_unchanged(real) -> None:
    name, base_dir, base, _, out = real
    core = Tokenizer.from_file(str(out / "tokenizer.json"))
    unchanged = 0
    for text, want in _vectors(base_dir):
        assert base.tokenizer.encode(text, add_special_tokens=False).ids == want
        if not any(0x2E80 <= ord(c) <= 0x9FFF or 0xF900 <= ord(c) <= 0xFFEF for c in text):
            assert core.encode(text, add_special_tokens=False).ids == want, text
            unchanged += 1
    assert unchanged >= 40


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_verify_and_compression(real, shared_data: Path) -> None:
    name, _, base, ext, out = real
    wiki = list(islice(iter_texts(shared_data / "corpus" / "eval" / "wiki_drcd.jsonl.gz"), 150))
    report = verify(out, base, wiki, stdlib_texts(30))
    assert report.new_tokens == 300
    core = Tokenizer.from_file(str(out / "tokenizer.json"))
    chars = sum(map(len, wiki))
    before = sum(len(e.ids) for e in base.tokenizer.encode_batch(wiki, add_special_tokens=False))
    after = sum(len(e.ids) for e in core.encode_batch(wiki, add_special_tokens=False))
    assert chars / after > chars / before * 1.005


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_extension_refines_base_segmentation(real, shared_data: Path) -> None:
    """Each new token stands for exactly the base tokens the base itself would produce there."""
    name, _, base, ext, out = real
    core = Tokenizer.from_file(str(out / "tokenizer.json"))
    docs = list(islice(iter_texts(shared_data / "corpus" / "eval" / "legal_mojlaw.jsonl.gz"), 40))
    names = {i: t for t, i in ext.data["model"]["vocab"].items()}
    used = 0
    for text in docs:
        got = core.encode(text, add_special_tokens=False).ids
        expanded = []
        for i in got:
            if i >= ext.first_new_id:
                used += 1
                expanded += decompose(base, names[i])
            else:
                expanded.append(i)
        assert expanded == base.tokenizer.encode(text, add_special_tokens=False).ids
    assert used > 100


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_gguf_vocab(real) -> None:
    name, _, base, ext, out = real
    g = gguf_vocab(out, vocab_size=ext.embedding_rows)
    assert g.pre == base.pre and len(g.tokens) == ext.embedding_rows
    if name == "llama3":
        assert (g.bos_id, g.eos_id, g.add_bos) == (128000, 128001, True)
    else:
        assert (g.bos_id, g.eos_id, g.pad_id, g.add_bos) == (None, 151643, 151643, False)


# ---------------------------------------------------------------- options and the reference's rank source


def test_max_token_chars_and_per_doc_cap(tiny: Path) -> None:
    base = load_base(tiny)
    long_runs = ["股份有限公司董事會決議" * 30] * 5 + ZH
    capped = learn_merges(base, long_runs, 25, max_token_chars=2, allow_fewer=True)
    assert capped and all(len(token_bytes(a + b).decode("utf-8", "replace")) <= 2 for a, b in capped)
    free = learn_merges(base, long_runs, 25)
    assert max(len(token_bytes(a + b).decode("utf-8", "replace")) for a, b in free) > 2
    # one document repeating a phrase weighs like a single use when capped at 1 per document
    boiler = ["法律\n" * 6] + ["圖書\n"] * 4
    assert token_bytes("".join(learn_merges(base, boiler, 1)[0])).decode() == "法律"
    assert token_bytes("".join(learn_merges(base, boiler, 1, per_doc_cap=1)[0])).decode() == "圖書"


def test_reference_ranks_from_merge_order_when_ids_do_not_follow_it(built) -> None:
    from zhtw.tokenizer.bytelevel import ids_follow_merge_order

    base, ext, out = built
    data = json.loads((out / "tokenizer.json").read_text())
    assert ids_follow_merge_order(base.data) and ids_follow_merge_order(data)
    first = ext.first_new_id
    v = data["model"]["vocab"]
    a, b = [t for t, i in v.items() if i in (first, first + 1)]
    v[a], v[b] = v[b], v[a]  # ids no longer follow the merge order
    assert not ids_follow_merge_order(data)
    hf = Tokenizer.from_str(json.dumps(data))
    by_merges = reference_encoder(data, rank_by="merges")
    for text in [*ZH, "中文字"]:
        assert by_merges.encode(text) == hf.encode(text, add_special_tokens=False).ids
