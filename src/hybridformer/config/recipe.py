"""A training recipe (:class:`ExperimentConfig`): the model, where its data comes from, how it is trained."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import Strict
from .model import ModelConfig

BPE_MIN_VOCAB = 261  # a learned BPE vocabulary holds 4 special + 256 byte tokens (data.tokenizer.RESERVED) + merges


class DataConfig(Strict):
    """Where training text comes from and how it becomes batches.

    Seq2seq reads either plain parallel files (``train_src``/``train_tgt``, ``.gz`` allowed), a JSONL
    file with named fields (``train_file`` + ``src_field``/``tgt_field``), or a built-in generated
    task (``builtin``). A decoder LM reads ``train_file`` as one text (JSONL: ``tgt_field``; with
    ``chat``, each record rendered as a conversation) split into blocks; without ``valid_file`` the last
    ``valid_fraction`` of it is held out. Relative paths are relative to the working directory.
    """

    format: Literal["text", "jsonl", "folders"] = "text"  # folders: labeled documents, see below
    train_src: str | None = None
    train_tgt: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    train_file: str | None = None
    valid_file: str | None = None
    src_field: str = "source"
    tgt_field: str = "target"
    # LM from JSONL pairs: each record is one conversation (user: src_field, assistant: tgt_field) rendered by
    # the chat template beside data.tokenizer (a converted instruct model's), as `generate --chat` prompts it
    chat: bool = False
    # LM from JSONL prompt/completion records (src_field = prompt, tgt_field = completion; EOS follows it)
    completion: bool = False
    answer_only: bool = True  # chat / completion: the loss falls on the answers only (false: on the whole text)
    valid_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    builtin: str | None = None  # name of a generated task from hybridformer.data.tasks
    builtin_train: int = 5000
    builtin_valid: int = 300
    tokenizer: str | None = None  # tokenizer.json to use; None = learn one from the training text
    tokenizer_kind: Literal["bpe", "char", "byte"] = "bpe"
    vocab_size: int = Field(8000, ge=BPE_MIN_VOCAB)  # when learning a BPE tokenizer (tokenizer_kind=bpe)
    max_src_len: int = Field(256, ge=2)  # longer pairs are dropped (and counted)
    max_tgt_len: int = Field(256, ge=2)
    block_size: int = Field(256, ge=1)  # LM: tokens per training block
    max_tokens: int = Field(4096, ge=1)  # padded tokens per batch (per process, per micro-step)
    limit_train: int | None = Field(None, ge=1)  # use only the first N training examples (quick runs)
    # classification (model.arch=encoder_classifier): labeled documents, truncated to max_src_len tokens.
    # format=jsonl: train_file/valid_file with text_field/label_field; format=folders: train_file is a
    # directory or tar archive of <split>/<label>/*.txt, valid from valid_split (valid_file, default
    # train_file). Without a validation source a seeded valid_fraction of the training documents is held out.
    text_field: str = "text"
    label_field: str = "label"
    train_split: str = "train"
    valid_split: str | None = None
    labels: list[str] | None = None  # keep only these labels (e.g. skip aclImdb's train/unsup)
    limit_valid: int | None = Field(None, ge=1)  # classification: validate on a seeded subset of N documents

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if (self.train_src is None) != (self.train_tgt is None) or (self.valid_src is None) != (self.valid_tgt is None):
            raise ValueError("parallel files come in pairs: set both train_src and train_tgt (and valid_src/valid_tgt)")
        return self


Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # the projections a LoRA adapter may attach to


class LoraConfig(Strict):
    """LoRA (Hu et al., 2021): the base stays frozen and each targeted projection learns
    ``W + (alpha / rank) · B A`` with ``A: (rank, in)``, ``B: (out, rank)``, B starting at zero."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # on the adapter's input
    targets: list[Literal[LORA_TARGETS]] = list(LORA_TARGETS)
    bias: Literal["none"] = "none"  # biases stay frozen (PEFT's bias="none")

    @model_validator(mode="after")
    def _check(self) -> LoraConfig:
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"train.lora.targets: name each projection once, from {', '.join(LORA_TARGETS)} "
                             f"(got {self.targets})")
        return self


class TrainConfig(Strict):
    """The optimization loop: AdamW, schedule, loss, precision, evaluation, checkpoints, stopping."""

    seed: int = Field(1, ge=0, lt=2**32)
    max_steps: int = Field(1000, ge=1)
    lr: float = Field(5e-4, gt=0.0)
    min_lr: float = Field(0.0, ge=0.0)
    schedule: Literal["inverse_sqrt", "cosine", "linear", "constant", "wsd"] = "inverse_sqrt"
    warmup_steps: int = Field(100, ge=0)
    # Final cool-down to min_lr over this share of max_steps: wsd (default 0.2) and inverse_sqrt (default none)
    decay_fraction: float | None = Field(None, gt=0.0, le=1.0)
    decay_shape: Literal["linear", "cosine", "1-sqrt"] = "linear"
    weight_decay: float = Field(0.01, ge=0.0)
    betas: tuple[Probability, Probability] = (0.9, 0.98)
    adam_eps: float = Field(1e-8, gt=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    clip_norm: float = Field(1.0, ge=0.0)  # 0 = no clipping
    accumulate: int = Field(1, ge=1)  # micro-batches per optimizer step
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # bf16 = autocast; auto = probe at start-up, keep faster
    # recompute each layer in backward: true = everything, selective = all but its matrix products and attention
    activation_checkpointing: bool | Literal["selective"] = False
    # decoder LM: the loss over this many positions at a time, each chunk's logits recomputed in backward
    loss_chunk: int | None = Field(None, ge=1)
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)  # e.g. 0.999: EMA of the weights
    eval_every: int = Field(200, ge=1)
    eval_bleu: int = Field(0, ge=0)  # seq2seq: greedy-decode this many validation pairs and log BLEU (0 = off)
    save_every: int | None = Field(None, ge=1)  # None = eval_every
    keep_last: int = Field(3, ge=1)
    patience: int | None = Field(None, ge=1)  # early stopping: evaluations without improvement
    log_every: int = Field(10, ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")  # auto | cpu | cuda | cuda:N | mps
    strategy: Literal["ddp", "fsdp"] = "ddp"  # under torchrun with more than one process
    init_from: str | None = None  # checkpoint whose weights start the run (fine-tuning); unused on resume
    lora: LoraConfig | None = None  # train LoRA adapters on the frozen init_from model instead of all weights
    base_precision: Literal["fp32", "bf16", "int8"] = "fp32"  # LoRA: how the frozen base weights are held

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lora is not None and self.init_from is None:
            raise ValueError("train.lora adapts a pretrained model: set train.init_from to its checkpoint")
        if self.base_precision == "int8" and self.lora is None:
            raise ValueError("train.base_precision=int8 holds the frozen base of a LoRA run in int8: it needs "
                             "train.lora")
        if self.base_precision == "bf16" and (self.lora is None or self.precision != "bf16"):
            raise ValueError("train.base_precision=bf16 holds a frozen LoRA base in bf16 and computes in bf16: it "
                             "needs train.lora and train.precision=bf16")
        if self.min_lr > self.lr:
            raise ValueError(f"train.min_lr={self.min_lr} must not exceed train.lr={self.lr}")
        if self.decay_fraction is not None and self.schedule not in ("wsd", "inverse_sqrt"):
            raise ValueError(f"train.decay_fraction applies to schedule wsd or inverse_sqrt, not {self.schedule!r} "
                             "(cosine and linear already decay over the whole run)")
        return self


class ExperimentConfig(Strict):
    """A training recipe: ``model``, ``data`` and ``train`` sections (``configs/*.yaml``).

    A fine-tuning recipe (``train.init_from``) is read by ``hybridformer.train.setup.load_recipe``, which
    fills the model section and the tokenizer from the checkpoint."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        classifier, labeled = self.model.arch == "encoder_classifier", self.data.format in ("jsonl", "folders")
        if classifier and (not labeled or self.data.builtin is not None):
            raise ValueError("data.format: an encoder_classifier trains on labeled documents; set data.format to "
                             "'jsonl' (text_field/label_field) or 'folders' (<split>/<label>/*.txt)")
        if classifier and self.train.eval_bleu:
            raise ValueError("train.eval_bleu decodes text; an encoder_classifier logs validation accuracy instead")
        if self.data.chat and (self.model.arch != "decoder_lm" or self.data.format != "jsonl"):
            raise ValueError("data.chat renders JSONL records as conversations for a language model: it needs "
                             f"model.arch='decoder_lm' and data.format='jsonl' (got {self.model.arch!r}, "
                             f"{self.data.format!r})")
        if self.data.completion and (self.data.chat or self.model.arch != "decoder_lm" or self.data.format != "jsonl"):
            raise ValueError("data.completion reads JSONL prompt/completion records for a language model: it needs "
                             "model.arch='decoder_lm', data.format='jsonl' and not data.chat (a chat model's "
                             "records go through its template with data.chat)")
        if not classifier and self.data.format == "folders":
            raise ValueError("data.format='folders' holds labeled documents for model.arch='encoder_classifier'")
        return self
