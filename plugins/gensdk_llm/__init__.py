"""gensdk_llm: local Hugging Face causal language models, batched and streamed, behind the policies.

`model.py` (the family: batched and streamed generation, identity, save/load), `loading.py` (reading an HF
directory, refusing pickle weights and remote code unless allowed), `train.py` (a byte-level BPE
tokenizer and a small GPT-2 trained on a text file), `plugin.py` (the hooks the `gensdk` entry point `llm`
names) and `cli.py` (`gensdk train llm`). Nothing here imports torch or transformers until it is used.
"""

from gensdk_llm.model import LLMFamily, LLMParams

__all__ = ["LLMFamily", "LLMParams"]
