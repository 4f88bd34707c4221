"""``scenestream serve``: the pipeline as a chat backend any OpenAI client can use.

* :mod:`~scenestream.api.openai_types`: the OpenAI chat request checked (unsupported fields refused by name),
  the responses and stream chunks built, the error envelope, the ``scenestream`` extension object;
* :mod:`~scenestream.api.keys`: API keys and their tenants (``SCENESTREAM_API_KEYS``);
* :mod:`~scenestream.api.gateway`: one reader of the result topics per process, handing each record to the
  request waiting for it (by message id);
* :mod:`~scenestream.api.service`: the stack behind the API (embedded broker and stages, or a gateway only)
  and the archive;
* :mod:`~scenestream.api.app`: the FastAPI routes.

Nothing in the backbone, the stages or the client imports this package (``tests/unit/test_imports.py``).
"""
