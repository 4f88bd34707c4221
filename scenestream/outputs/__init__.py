"""Outputs beyond text: a scene as one line, as a picture, and an answer as speech.

Each module is pure and is imported on its own (nothing is imported here, so the
light ones never pay for the heavy ones):

    from scenestream.outputs.formula import format_formula, parse_formula   # the scene as one line and back
    from scenestream.outputs.image import scene_svg, scene_png              # the scene's field drawn (SVG, PNG)
    from scenestream.outputs.voice import speak, voice_params               # an answer spoken by espeak-ng
    from scenestream.outputs.files import make_outputs, write_image        # the above written to files (the CLI)
"""
