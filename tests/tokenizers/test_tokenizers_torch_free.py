import subprocess
import sys
import textwrap


def test_tokenizers_import_and_work_without_torch(tmp_path):
    """With torch made unimportable, all three tokenizers import, train, save and load."""
    script = textwrap.dedent(
        f"""
        import sys, warnings
        sys.modules["torch"] = None  # any "import torch" now raises ImportError
        from pathlib import Path
        from seqkit.tokenizers import TokenizerSection, build_tokenizers, load_tokenizers, save_tokenizers
        from seqkit.tokenizers.char import CharTokenizer
        from seqkit.tokenizers.spm import SentencePieceTokenizer
        from seqkit.tokenizers.word import WordTokenizer
        warnings.simplefilter("ignore")
        work = Path({str(tmp_path)!r})
        for spec in ({{"type": "char"}}, {{"type": "word"}}, {{"type": "sentencepiece", "vocab_size": 20}}):
            src, tgt = build_tokenizers(TokenizerSection(source=spec), ["a b c", "b c d"], ["c d e"], work)
            save_tokenizers(work / spec["type"], src, tgt)
            assert load_tokenizers(work / spec["type"]) == (src, tgt)
        assert sys.modules["torch"] is None
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
