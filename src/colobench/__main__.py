from colobench.cli import main

main()
