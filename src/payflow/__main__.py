from payflow.cli import main

main()
