from scenestream.cli import main

main()
