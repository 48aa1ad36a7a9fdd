"""FastChat's separator styles, and which one a worker means by the number it sends.

A worker sends a template's ``sep_style`` as a bare integer, and FastChat numbers its styles in
declaration order, which changed after its last release: fschat 0.2.36 (what ``pip install
fschat`` gives) has CHATGLM = 8 up to YUAN2 = 19, while FastChat's git main inserted LLAMA3 at 8,
shifting CHATGLM to YUAN2 one up, and appended GEMMA, CLLM and DEFAULT. So 1 to 7 mean the same
in both, 20 to 23 exist only in main, and 8 to 19 are ambiguous. For those, the template's
``name`` decides when it is one FastChat registers (a worker started with ``--conv-template
qwen-7b-chat`` sends that name); for any other name the ``fastchat_sep_styles`` setting says
which numbering the workers use.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, auto

from contracts.errors import WorkerError
from contracts.fastchat import SepStyleNumbering


class SeparatorStyle(Enum):
    """One rendering rule of FastChat's ``Conversation.get_prompt``, by name."""

    ADD_COLON_SINGLE = auto()
    ADD_COLON_TWO = auto()
    ADD_COLON_SPACE_SINGLE = auto()
    NO_COLON_SINGLE = auto()
    NO_COLON_TWO = auto()
    ADD_NEW_LINE_SINGLE = auto()
    LLAMA2 = auto()
    LLAMA3 = auto()
    CHATGLM = auto()
    CHATML = auto()
    CHATINTERN = auto()
    DOLLY = auto()
    RWKV = auto()
    PHOENIX = auto()
    ROBIN = auto()
    FALCON_CHAT = auto()
    CHATGLM3 = auto()
    DEEPSEEK_CHAT = auto()
    METAMATH = auto()
    YUAN2 = auto()
    GEMMA = auto()
    CLLM = auto()
    DEFAULT = auto()


_S = SeparatorStyle
_COMMON = (_S.ADD_COLON_SINGLE, _S.ADD_COLON_TWO, _S.ADD_COLON_SPACE_SINGLE, _S.NO_COLON_SINGLE,
           _S.NO_COLON_TWO, _S.ADD_NEW_LINE_SINGLE, _S.LLAMA2)
_SHIFTED = (_S.CHATGLM, _S.CHATML, _S.CHATINTERN, _S.DOLLY, _S.RWKV, _S.PHOENIX, _S.ROBIN,
            _S.FALCON_CHAT, _S.CHATGLM3, _S.DEEPSEEK_CHAT, _S.METAMATH, _S.YUAN2)

NUMBERINGS: Mapping[SepStyleNumbering, Mapping[int, SeparatorStyle]] = {
    "release": dict(enumerate((*_COMMON, *_SHIFTED), start=1)),
    "main": dict(enumerate((*_COMMON, _S.LLAMA3, *_SHIFTED, _S.GEMMA, _S.CLLM, _S.DEFAULT),
                           start=1)),
}

# The templates FastChat registers (0.2.36 and git main) whose style has a number that depends
# on the version, and the bundled worker's ChatML family. Names are exact, as the worker sends.
TEMPLATE_STYLES: Mapping[str, SeparatorStyle] = {
    "llama-3": _S.LLAMA3,
    **dict.fromkeys(("chatglm", "chatglm2"), _S.CHATGLM),
    **dict.fromkeys(("catppt", "chatml", "dolphin-2.2.1-mistral-7b", "lemur-70b-chat",
                     "llava-chatml", "mistral-7b-openorca", "mpt-30b-chat", "mpt-7b-chat",
                     "Nous-Hermes-2-Mixtral-8x7B-DPO", "OpenHermes-2.5-Mistral-7B", "orca-2",
                     "qwen-7b-chat", "starchat", "TinyLlama", "Yi-34b-chat", "zephyr"),
                    _S.CHATML),
    "internlm-chat": _S.CHATINTERN,
    **dict.fromkeys(("dolly_v2", "vigogne_instruct"), _S.DOLLY),
    **dict.fromkeys(("falcon", "rwkv"), _S.RWKV),
    **dict.fromkeys(("phoenix", "ReaLM-7b-v1"), _S.PHOENIX),
    **dict.fromkeys(("Robin", "tigerbot"), _S.ROBIN),
    **dict.fromkeys(("falcon-chat", "openchat_3.5", "tenyxchat"), _S.FALCON_CHAT),
    "chatglm3": _S.CHATGLM3,
    "deepseek-chat": _S.DEEPSEEK_CHAT,
    "metamath": _S.METAMATH,
    "yuan2": _S.YUAN2,
}


def resolve_style(number: int, name: str,
                  numbering: SepStyleNumbering = "release") -> SeparatorStyle:
    """The style a worker means by ``number`` for a template called ``name``.

    ``numbering`` is the fallback for an ambiguous number and a name FastChat does not register.
    """
    candidates = [table[number] for table in NUMBERINGS.values() if number in table]
    if not candidates:
        raise WorkerError(f"the worker's template has unknown sep_style {number}")
    if len(set(candidates)) == 1:
        return candidates[0]
    named = TEMPLATE_STYLES.get(name)
    for style in candidates:
        if style is named:
            return style
    return NUMBERINGS[numbering][number]
