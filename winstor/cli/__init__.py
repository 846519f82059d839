"""The `winstor` command: one module per subcommand; `main` assembles them."""
