from p9cli.cli import main

main()
