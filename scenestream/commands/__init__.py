"""The ``scenestream`` commands, one module per group, each command's human rendering beside it.

    stack   run, broker, ingest, tail, topics list|create, settings
    client  ask, scene
    audit   trace, history, replay
    model   setup, train, sample-answers
    bench   bench transport|scene|decoder|quality|memory|e2e|lora|gpu

``scenestream.cli`` assembles them into one Typer app; :mod:`.common` holds what they share.
Heavy imports (torch, faust, aiokafka, vLLM, the models) happen inside the command functions,
so ``scenestream --help`` stays quick.
"""
