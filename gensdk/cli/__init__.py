"""The `gensdk` command line: core commands here, the rest contributed by plugins (`register_commands`)."""
