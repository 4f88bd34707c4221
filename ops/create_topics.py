"""Create every declared topic (and its DLQ) on a real Kafka cluster; idempotent.

    SCENESTREAM_BROKER=kafka://k1:9092,k2:9092 SCENESTREAM_PARTITIONS=12 \\
        python -m scenestream.ops.create_topics

Same as ``scenestream topics create``. The embedded broker needs no such step:
``scenestream run`` and ``ask`` create the topics themselves.
"""

from __future__ import annotations

import asyncio
import sys

from scenestream.settings import get_settings
from scenestream.topics import all_topic_names, create_topics


def main() -> int:
    settings = get_settings()
    if not settings.broker:
        print("error: set SCENESTREAM_BROKER=kafka://host:port[,host:port]", file=sys.stderr)
        return 2
    created = asyncio.run(create_topics(settings))
    for name in all_topic_names(settings):
        print(f"{name:32} {'created' if name in created else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
