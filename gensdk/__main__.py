from gensdk.cli.main import main

main()
