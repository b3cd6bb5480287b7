from dflab.cli import main

main()
