"""Text to batches: reading text, tokenizers, dataset readers, token-budget batching, built-in generated tasks."""

from .batching import BatchStream, DataPosition, collate, make_batches
from .datasets import DataReport, Example, lm_examples, read_jsonl, read_parallel, seq2seq_examples
from .tasks import TASKS, Task, make_task, number_to_words
from .text import iter_lines, pad, read_lines, read_text
from .tokenizer import char_tokenizer, load_tokenizer_file, train_tokenizer, train_tokenizer_files

__all__ = [
    "BatchStream", "DataPosition", "collate", "make_batches",
    "DataReport", "Example", "lm_examples", "read_jsonl", "read_parallel", "seq2seq_examples",
    "iter_lines", "pad", "read_lines", "read_text",
    "TASKS", "Task", "make_task", "number_to_words",
    "char_tokenizer", "load_tokenizer_file", "train_tokenizer", "train_tokenizer_files",
]
