"""A small byte-level tokenizer for tiny LAVIDA models (no download needed).

Every byte is one token (ids 0-255, GPT-2 byte-to-unicode alphabet) and the chat/vision special tokens of
``TINY_SPECIAL_TOKENS`` follow (ids 256-263), so a ``LavidaConfig.tiny()`` MLLM can read real prompts. The chat
template writes the Qwen chat format (``<|im_start|>role\\n...<|im_end|>``) with ``<|vision_start|><|video_pad|>
<|vision_end|>`` for a video.
"""

from __future__ import annotations

from transformers import Qwen2Tokenizer

from lavida.configuration_lavida import TINY_BYTE_VOCAB_SIZE, TINY_SPECIAL_TOKENS

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character map used by byte-level BPE vocabularies."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    mapping, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + shifted)
            shifted += 1
    return mapping


def build_byte_tokenizer() -> Qwen2Tokenizer:
    """The tiny models' tokenizer: 256 byte tokens + ``TINY_SPECIAL_TOKENS`` (264 ids, ``<SEG>`` = 263)."""
    vocab = {char: byte for byte, char in byte_to_unicode().items()}
    for offset, token in enumerate(TINY_SPECIAL_TOKENS):
        vocab[token] = TINY_BYTE_VOCAB_SIZE + offset
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )
    tokenizer.add_tokens(list(TINY_SPECIAL_TOKENS), special_tokens=True)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


__all__ = ["QWEN_CHAT_TEMPLATE", "build_byte_tokenizer", "byte_to_unicode"]
