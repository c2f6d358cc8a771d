from decnet.cli import main

main()
