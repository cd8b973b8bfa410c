"""Tokenizer stage on tiny SentencePiece bases trained in the test: build, no-op rerun, refusals, and one
deliberately broken tokenizer per verify invariant (each must be caught with its example)."""

from __future__ import annotations

import json
import random
import shutil
import sysconfig
from pathlib import Path

import pytest
import sentencepiece as spm
from tokenizers import Tokenizer

from zhtw.tokenizer.build import METADATA, BuildConfig, build
from zhtw.tokenizer.charclass import has_zh
from zhtw.tokenizer.cli import main
from zhtw.tokenizer.errors import (
    CorpusTooSmallError,
    OutputExistsError,
    UnsupportedBaseError,
    VerificationError,
)
from zhtw.tokenizer.evaluate import evaluate, write_report
from zhtw.tokenizer.hf import build_fast_tokenizer, write_hf_files
from zhtw.tokenizer.merge import candidate_pieces, merged_proto, naive_merge, reachable, scores_below
from zhtw.tokenizer.spmodel import NORMAL, ModelProto, load_base, load_proto
from zhtw.tokenizer.verify import check_structure, default_texts, verify_dir

ZH_SENTENCES = [
    "臺灣位於東亞，首都是臺北市。",
    "中華民國的憲法於一九四七年施行。",
    "本細則依法務部組織法第二十條訂定之。",
    "他說：「我們明天一起去圖書館讀書。」",
    "這個程式會讀取檔案並計算每一行的字數。",
    "政府為推動數位發展，特設數位發展部。",
    "颱風來襲，請民眾注意安全，避免前往山區。",
    "學生在教室裡認真地學習中文與數學。",
    "臺中市與高雄市都是臺灣的重要城市。",
    "第 1 條　本辦法依食品安全衛生管理法訂定之。",
    "請問您需要繁體中文的說明文件嗎？",
    "資料庫伺服器的記憶體使用量過高。",
    "夜市裡有珍珠奶茶、臭豆腐和蚵仔煎。",
    "行政院公報刊登最新的法規命令。",
]
EN_TEXT = (
    "The quick brown fox jumps over the lazy dog. A tokenizer splits text into pieces; "
    "each piece has an id and a score. Byte fallback keeps unknown characters lossless.\n"
)


def _zh_corpus(path: Path, docs: int = 400, seed: int = 1) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(docs):
            text = "".join(rng.choice(ZH_SENTENCES) for _ in range(rng.randint(2, 6)))
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return path


def _train_base(tmp: Path, model_type: str = "bpe", byte_fallback: bool = True, vocab: int = 400) -> Path:
    """A tiny Llama-like base (identity normalizer, dummy prefix, byte fallback) on English + code."""
    src = tmp / "base_train.txt"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code = "".join((stdlib / name).read_text(encoding="utf-8") for name in ("textwrap.py", "bisect.py"))
    src.write_text(EN_TEXT * 20 + (code if vocab >= 400 else ""), encoding="utf-8")
    prefix = tmp / f"base_{model_type}_{int(byte_fallback)}"
    spm.SentencePieceTrainer.train(
        input=str(src), model_prefix=str(prefix), model_type=model_type, vocab_size=vocab,
        byte_fallback=byte_fallback, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        allow_whitespace_only_pieces=True, hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("tiny")
    base = _train_base(tmp)
    corpus = _zh_corpus(tmp / "zh.jsonl")
    out = tmp / "built"
    build(BuildConfig(base=str(base), corpus=[str(corpus)], output=str(out), vocab_size=576,
                      heldout_mb=0.004, num_threads=1, progress=False), log=lambda m: None)
    return {"tmp": tmp, "base": base, "corpus": corpus, "out": out}


def _copy(tiny: dict[str, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tiny["out"], dst)
    return dst


def test_build_exact_size_metadata_and_verify(tiny: dict[str, Path]) -> None:
    out = tiny["out"]
    meta = json.loads((out / METADATA).read_text(encoding="utf-8"))
    proto = load_proto(out / "tokenizer.model")
    assert len(proto.pieces) == 576 == meta["vocab_size"]
    base = load_base(tiny["base"])
    assert meta["base"]["sha256"] == base.sha256
    assert meta["num_added"] == 576 - base.size == len(meta["added_pieces"])
    assert [p.piece for p in proto.pieces[base.size :]] == meta["added_pieces"]
    assert all(has_zh(p) for p in meta["added_pieces"])
    assert meta["selection"]["method"] == "learned order"
    assert meta["training"]["trainer"]["split_by_unicode_script"] is False
    assert meta["corpus"]["heldout_documents"] > 0 and meta["corpus"]["train_documents"] > 0
    assert {"sentencepiece", "tokenizers", "transformers", "protobuf"} <= set(meta["versions"])
    assert set(meta["files"]) == {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    report = verify_dir(out)
    assert report["english_texts"] > 20 and report["llama_tokenizer_checked"]
    # Chinese now compresses better than with the base.
    text = "".join(ZH_SENTENCES)
    assert len(spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model")).encode(text)) < len(
        spm.SentencePieceProcessor(model_file=str(tiny["base"])).encode(text)
    ) / 2


def test_english_and_code_unchanged(tiny: dict[str, Path]) -> None:
    new = spm.SentencePieceProcessor(model_file=str(tiny["out"] / "tokenizer.model"))
    old = spm.SentencePieceProcessor(model_file=str(tiny["base"]))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [p.read_text(encoding="utf-8") for p in sorted(stdlib.glob("*.py"))[:60]]
    assert all(new.encode(t) == old.encode(t) for t in texts)


def test_hf_loading_and_spaces_promise(tiny: dict[str, Path]) -> None:
    from transformers import AutoTokenizer, LlamaTokenizer

    out = tiny["out"]
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    auto = AutoTokenizer.from_pretrained(str(out))
    llama = LlamaTokenizer.from_pretrained(str(out))
    base_sp = spm.SentencePieceProcessor(model_file=str(tiny["base"]))
    for tok in (auto, llama):
        assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (
            base_sp.unk_id(), base_sp.bos_id(), base_sp.eos_id()
        )
        assert len(tok) == 576
        assert tok("臺灣")["input_ids"][0] == base_sp.bos_id()
    texts = ["  two leading", " one leading", "a  b   c    d", "x" + " " * 17 + "y", "臺灣  中文   測試", "   "]
    for t in texts:
        assert auto.encode(t, add_special_tokens=False) == sp.encode(t)
        assert auto.decode(auto.encode(t, add_special_tokens=False)) == t
        want = sp.encode(t[1:]) if t.startswith(" ") else sp.encode(t)
        assert llama.encode(t, add_special_tokens=False) == want


def test_rerun_is_noop_and_foreign_output_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    cfg = BuildConfig(base=str(tiny["base"]), corpus=[str(tiny["corpus"])], output=str(tiny["out"]),
                      vocab_size=576, heldout_mb=0.004, num_threads=1, progress=False)
    before = (tiny["out"] / "tokenizer.model").stat().st_mtime_ns
    assert build(cfg, log=lambda m: None).skipped
    assert (tiny["out"] / "tokenizer.model").stat().st_mtime_ns == before
    cfg.vocab_size = 640
    with pytest.raises(OutputExistsError, match="--overwrite"):
        build(cfg, log=lambda m: None)


def test_deterministic_for_a_seed(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "again"
    build(BuildConfig(base=str(tiny["base"]), corpus=[str(tiny["corpus"])], output=str(out), vocab_size=576,
                      heldout_mb=0.004, num_threads=1, progress=False, verify=False), log=lambda m: None)
    assert (out / "tokenizer.model").read_bytes() == (tiny["out"] / "tokenizer.model").read_bytes()
    assert (out / "tokenizer.json").read_bytes() == (tiny["out"] / "tokenizer.json").read_bytes()


def test_savings_selection_builds_and_verifies(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "savings"
    meta = build(BuildConfig(base=str(tiny["base"]), corpus=[str(tiny["corpus"])], output=str(out), vocab_size=576,
                             heldout_mb=0.004, num_threads=1, progress=False, selection="savings"),
                 log=lambda m: None).metadata
    assert meta["selection"]["method"] == "token savings on held-back text"
    assert meta["selection"]["rounds"] and meta["vocab_size"] == 576
    verify_dir(out, ["臺灣的首都是臺北市。", "plain English"])


def test_unigram_base_refused(tmp_path: Path) -> None:
    model = _train_base(tmp_path, model_type="unigram", vocab=320)
    with pytest.raises(UnsupportedBaseError, match="UNIGRAM.*Supported: SentencePiece BPE models with byte fallback"):
        load_base(model)
    corpus = _zh_corpus(tmp_path / "zh.jsonl", docs=20)
    rc = main(["build", "--base", str(model), "--corpus", str(corpus), "--output", str(tmp_path / "o"), "--quiet"])
    assert rc == 1


def test_base_with_pieces_outranking_its_merges_refused(tiny: dict[str, Path], tmp_path: Path, capsys) -> None:
    """A Chinese-LLaMA-style base (new pieces appended at score 0) is refused before training, nothing written."""
    trained = load_proto(tiny["out"] / "tokenizer.model")
    naive = naive_merge(load_proto(tiny["base"]), trained, len(trained.pieces))
    model = tmp_path / "naive.model"
    model.write_bytes(naive.SerializeToString())
    with pytest.raises(UnsupportedBaseError, match="not in merge order.*Extend the original base"):
        load_base(model)
    out = tmp_path / "o"
    rc = main(["build", "--base", str(model), "--corpus", str(tiny["corpus"]), "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "naive.model is not in merge order" in err
    assert not out.exists()


def test_base_without_byte_fallback_refused(tmp_path: Path) -> None:
    model = _train_base(tmp_path, byte_fallback=False, vocab=120)
    with pytest.raises(UnsupportedBaseError, match="no byte fallback"):
        load_base(model)


def test_corpus_too_small(tiny: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CorpusTooSmallError, match="--vocab-size"):
        build(BuildConfig(base=str(tiny["base"]), corpus=[str(tiny["corpus"])], output=str(tmp_path / "o"),
                          vocab_size=20000, num_threads=1, progress=False), log=lambda m: None)


def test_merge_rules(tiny: dict[str, Path]) -> None:
    scores = scores_below(-1e9, 1000)
    assert all(a > b for a, b in zip([-1e9] + scores, scores))
    import numpy as np

    assert all(float(np.float32(s)) == s for s in scores)
    base = load_proto(tiny["base"])
    ok, bad = reachable(["臺灣", "臺", "灣", "龘龘", "的ab"], base)
    assert ok == ["臺灣", "臺", "灣"] and bad == ["龘龘", "的ab"]
    trained = ModelProto()
    for piece in ["▁xyzzy", "臺灣", "hello"]:
        trained.pieces.add(piece=piece, score=0.0, type=NORMAL)
    assert candidate_pieces(trained, base) == ["臺灣"]
    assert "▁xyzzy" in candidate_pieces(trained, base, zh_only=False)
    naive = naive_merge(base, trained, len(base.pieces) + 2)
    assert [p.score for p in naive.pieces[len(base.pieces) :]] == [0.0, 0.0]


# --- every verify invariant, broken on purpose -------------------------------------------------------


def _rewrite(directory: Path, proto: ModelProto, base_path: Path) -> None:
    write_hf_files(directory, proto, load_base(base_path).special)
    meta = json.loads((directory / METADATA).read_text(encoding="utf-8"))
    meta["vocab_size"] = len(proto.pieces)
    (directory / METADATA).write_text(json.dumps(meta), encoding="utf-8")


def _verify_fails(directory: Path, invariant: str, texts: list[str] | None = None) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_dir(directory, texts)
    assert info.value.invariant == invariant, str(info.value)
    return info.value


def test_verify_catches_duplicate_piece(tiny: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    proto = load_proto(d / "tokenizer.model")
    proto.pieces[-1].piece = proto.pieces[-2].piece
    (d / "tokenizer.model").write_bytes(proto.SerializeToString())
    err = _verify_fails(d, "no_duplicates")
    assert err.example == proto.pieces[-2].piece


def test_verify_catches_changed_base_id(tiny: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    proto = load_proto(d / "tokenizer.model")
    a, b = proto.pieces[300].piece, proto.pieces[301].piece
    proto.pieces[300].piece, proto.pieces[301].piece = b, a
    _rewrite(d, proto, tiny["base"])
    _verify_fails(d, "base_ids")


def test_verify_catches_changed_special_ids(tiny: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    proto = load_proto(d / "tokenizer.model")
    proto.trainer_spec.bos_id = 2
    (d / "tokenizer.model").write_bytes(proto.SerializeToString())
    _verify_fails(d, "special_tokens")
    d2 = tmp_path / "hf_special"
    shutil.copytree(tiny["out"], d2)
    cfg = json.loads((d2 / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["bos_token"] = "</s>"
    (d2 / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    _verify_fails(d2, "special_tokens")


def test_verify_catches_score_above_base(tiny: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    proto = load_proto(d / "tokenizer.model")
    n_base = len(load_proto(tiny["base"]).pieces)
    proto.pieces[n_base + 3].score = 0.0  # Chinese-LLaMA style: outranks every base merge
    _rewrite(d, proto, tiny["base"])
    err = _verify_fails(d, "new_scores")
    assert err.example == proto.pieces[n_base + 3].piece


def test_verify_catches_unbuildable_piece(tiny: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    proto = load_proto(d / "tokenizer.model")
    proto.pieces[-1].piece = "龘龘龘"  # its characters are nowhere in the vocabulary
    _rewrite(d, proto, tiny["base"])
    err = _verify_fails(d, "buildable")
    assert err.example == "龘龘龘"


def test_verify_catches_wrong_vocab_size(tiny: dict[str, Path], tmp_path: Path) -> None:
    d = _copy(tiny, tmp_path)
    meta = json.loads((d / METADATA).read_text(encoding="utf-8"))
    meta["vocab_size"] = 640
    (d / METADATA).write_text(json.dumps(meta), encoding="utf-8")
    _verify_fails(d, "vocab_size")


def test_verify_catches_fast_tokenizer_merge_order(tiny: dict[str, Path], tmp_path: Path) -> None:
    """A tokenizer.json whose merges are not in sentencepiece's priority order (the converter trap)."""
    d = _copy(tiny, tmp_path)
    data = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["merges"] = list(reversed(data["model"]["merges"]))
    (d / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    err = _verify_fails(d, "ids_agree")
    assert err.example is not None and "AutoTokenizer" in str(err)


def test_verify_catches_metaspace_leading_space(tiny: dict[str, Path], tmp_path: Path) -> None:
    """The Metaspace pre-tokenizer (prepend only if no leading space) breaks texts that start with a space."""
    from tokenizers import normalizers, pre_tokenizers

    d = _copy(tiny, tmp_path)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.save(str(d / "tokenizer.json"))
    err = _verify_fails(d, "ids_agree", ["no leading space", "  two leading spaces"])
    assert err.example == "  two leading spaces"


def test_verify_catches_broken_roundtrip(tiny: dict[str, Path], tmp_path: Path) -> None:
    from tokenizers import decoders

    d = _copy(tiny, tmp_path)
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.save(str(d / "tokenizer.json"))
    err = _verify_fails(d, "roundtrip", ["plain", "emoji 🙂 needs byte fallback"])
    assert err.example == "emoji 🙂 needs byte fallback"


def test_verify_catches_changed_english(tiny: dict[str, Path], tmp_path: Path) -> None:
    """A non-Chinese piece, even scored below the base, changes English tokenisation."""
    d = _copy(tiny, tmp_path)
    proto = load_proto(d / "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=str(tiny["base"]))
    pieces = sp.encode("The quick brown fox", out_type=str)
    joined = next(a + b for a, b in zip(pieces, pieces[1:]) if sp.piece_to_id(a + b) == sp.unk_id())
    floor = proto.pieces[-1].score
    proto.pieces.add(piece=joined, score=scores_below(floor, 1)[0], type=NORMAL)
    _rewrite(d, proto, tiny["base"])
    err = _verify_fails(d, "english_unchanged", ["The quick brown fox"])
    assert err.example == "The quick brown fox"


def test_verify_cli_exit_codes(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"text": "臺北市  的  捷運"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["verify", str(tiny["out"]), "--text", str(extra)]) == 0
    assert "OK:" in capsys.readouterr().out
    d = _copy(tiny, tmp_path)
    proto = load_proto(d / "tokenizer.model")
    proto.pieces[-1].piece = proto.pieces[-2].piece
    (d / "tokenizer.model").write_bytes(proto.SerializeToString())
    assert main(["verify", str(d)]) == 1
    assert "no_duplicates" in capsys.readouterr().err


def test_structure_check_on_clean_merge(tiny: dict[str, Path]) -> None:
    base = load_proto(tiny["base"])
    check_structure(merged_proto(base, ["臺", "灣", "臺灣"]), base, len(base.pieces) + 3)
    assert default_texts()  # built-ins, stdlib sources


def test_fast_tokenizer_matches_sentencepiece_on_runs_of_spaces(tiny: dict[str, Path]) -> None:
    proto = load_proto(tiny["out"] / "tokenizer.model")
    tok = build_fast_tokenizer(proto, load_base(tiny["base"]).special)
    sp = spm.SentencePieceProcessor(model_file=str(tiny["out"] / "tokenizer.model"))
    texts = [" " * n + "x" + " " * m + "臺灣" + " " * n for n in range(12) for m in range(0, 12, 3)]
    for t in texts:
        assert tok.encode(t, add_special_tokens=False).ids == sp.encode(t), repr(t)


def test_eval_report(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "zh_eval.jsonl"
    _zh_corpus(text, docs=30, seed=7)
    result = evaluate([str(tiny["base"]), str(tiny["out"])], [str(text)])
    rows = {r["tokenizer"]: r for r in result["rows"]}
    base_row, new_row = rows[tiny["base"].parent.name], rows["built"]
    assert new_row["chars_per_token"] > 2 * base_row["chars_per_token"]
    assert base_row["byte_fallback_share"] > 0.5 > new_row["byte_fallback_share"]
    assert new_row["new_pieces"] == 576 - 400 and 0 <= new_row["new_pieces_unused"] < new_row["new_pieces"]
    paths = write_report(result, tmp_path / "report")
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert main(["eval", str(tiny["base"]), str(tiny["out"]), "--text", str(text), "--output", str(tmp_path / "r2")]) == 0
    assert "chars/token" in capsys.readouterr().out


def test_cli_default_vocab_size_is_the_builds() -> None:
    """zhtw-tok's --help states the build default without importing sentencepiece: the two must agree."""
    from zhtw.tokenizer import build as build_module
    from zhtw.tokenizer import cli

    assert cli.DEFAULT_VOCAB_SIZE == build_module.DEFAULT_VOCAB_SIZE


def test_verify_does_not_import_build():
    """The build <-> verify import cycle stays broken: verify reads metadata through tokenizer/meta.py."""
    import ast

    from zhtw.tokenizer import verify

    tree = ast.parse(Path(verify.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "zhtw.tokenizer.build" not in imported
