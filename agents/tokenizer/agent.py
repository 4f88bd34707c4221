"""The tokenizer stage in the stream: raw-text → tokens (agent ``tokenize_raw_text``)."""

from __future__ import annotations

from typing import Sequence

from scenestream.agents.tokenizer.transform import Tokenizer
from scenestream.backbone import Resources, Result, StageSpec, map_each
from scenestream.schemas.records import RawText
from scenestream.settings import Settings
from scenestream.topics import TOKENS


class TokenizeRawText:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def process(self, records: Sequence[RawText]) -> list[Result]:
        return map_each(lambda raw: [(TOKENS, self.tokenizer.tokenize(raw))], records)

    def close(self) -> None:
        """Nothing to release: the SentencePiece model is plain memory."""


def build(settings: Settings, resources: Resources) -> TokenizeRawText:
    tokenizer = Tokenizer.from_settings(settings)
    _ = tokenizer.sp  # load the model at start-up, not on the first message
    return TokenizeRawText(tokenizer)


def stages(settings: Settings) -> list[StageSpec]:
    return [StageSpec.of("tokenize_raw_text", build)]
