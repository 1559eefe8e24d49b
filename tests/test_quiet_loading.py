"""Loading a transformers model writes nothing of its own to stderr, and changes no setting."""
from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer
from transformers.utils import logging as hf_logging

from mmrec.encoders.hf import HFTextEncoder


@pytest.fixture
def tiny_bert(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "dog"]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(tmp_path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=8, intermediate_size=8,
                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16)
    BertModel(config).save_pretrained(tmp_path)
    return tmp_path


def test_loading_prints_no_foreign_bar_or_log_and_restores_the_settings(tiny_bert, capfd):
    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_info()  # a user who wants transformers' info logs elsewhere
    try:
        capfd.readouterr()
        encoder = HFTextEncoder(str(tiny_bert))
        encoder.load(torch.device("cpu"))
        assert encoder.encode(["cat"]).shape == (1, 8)
        captured = capfd.readouterr()
        assert captured.err == "" and captured.out == ""
        assert hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.INFO
    finally:
        hf_logging.set_verbosity_warning()
